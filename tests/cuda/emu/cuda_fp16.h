/* The CUDA emulator's stand-in for <cuda_fp16.h>. */
#include "pdc_cuda_emu.h"
