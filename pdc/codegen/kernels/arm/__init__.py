"""The "arm" kernel family: NEON (AArch64, ARMv7-A), Helium (Cortex-M55) and plain-C kernels for
ARM targets, each module a generator family (vector.py: the C vector layer they share). ARM
targets ask this family before the portable one; a generator here returns None for a node it does
not cover. The only folder besides x86/ where intrinsics are written (see native.py)."""
