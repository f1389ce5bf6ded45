/* The CUDA emulator's stand-in for <mma.h>. */
#include "pdc_cuda_emu.h"
