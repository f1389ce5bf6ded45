"""The "x86" kernel family: AVX-512 and AVX2 code for x86-64 targets, the only folder besides arm/
where intrinsics are written. Its modules implement native pieces of the portable generators
(native.py: the dense GEMM microkernels, row loops, the quantized tile; gemm.py, rows.py,
conv_c.py, quant.py) and the generators of the x86 family (conv.py: AVX-512 convolution paths),
which x86 targets ask before the portable ones. Every piece keeps its vector code under the ISA's
preprocessor test (__AVX512F__, __AVX2__) with the portable plain C as the fallback."""
