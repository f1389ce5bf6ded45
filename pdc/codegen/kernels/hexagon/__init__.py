"""The "hexagon" kernel family: HVX (128-byte vectors) int8 kernels for the Hexagon DSP targets, each
module a generator family. Hexagon targets ask this family before the portable one; a generator here
returns None for a node it does not cover. With x86/ and arm/, one of the folders where intrinsics are
written (see native.py)."""
