/* pdc CUDA host runtime: the GPU, its stream, device memory, launches and CUDA graphs, for
 * bundles compiled for the cuda targets. C99 on the CUDA runtime API (linked statically, so a
 * bundle loads on a machine without the driver and says so at init).
 *
 * Device choice: PDC_CUDA_DEVICE (index, default 0). The bundle's kernels are compiled for one
 * compute capability (its target, cuda-smNN); init refuses a GPU of another architecture family
 * rather than fail at the first launch. Every failing call leaves a one-line reason in
 * pdc_cuda_error(). */
#ifndef PDC_CUDA_H
#define PDC_CUDA_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include "pdc_runtime.h"

typedef struct {
    int device;
    cudaStream_t stream;
    int open;
} pdc_cu;

/* The reason of the last failure (empty when none). */
const char *pdc_cuda_error(void);

/* Opens the GPU (see above) for kernels compiled for sm_<arch> (e.g. 90); `target` names the
   bundle's target in the messages. */
pdc_status pdc_cu_open(pdc_cu *cu, int arch, const char *target);
void pdc_cu_close(pdc_cu *cu);

/* Device memory of `bytes` bytes (at least 1), filled from `host` when not NULL; the message of
   an allocation failure names what it was for and the GPU's free memory. */
pdc_status pdc_cu_alloc(pdc_cu *cu, size_t bytes, const void *host, const char *what, void **out);
void pdc_cu_free(void *p);
/* A launch of `fn` (an entry of the program's kernel table) on the stream. */
pdc_status pdc_cu_launch(pdc_cu *cu, const void *fn, const unsigned grid[3], const unsigned block[3], void **args);
/* Copies on the stream between any two pointers (host or device: unified addressing); they block
   until done, so that host memory is free again on return. */
pdc_status pdc_cu_copy(pdc_cu *cu, void *dst, const void *src, size_t bytes);
pdc_status pdc_cu_zero(pdc_cu *cu, void *dst, size_t bytes);
/* Stream capture: the launches between begin and end become one graph, instantiated once. */
pdc_status pdc_cu_capture_begin(pdc_cu *cu);
pdc_status pdc_cu_capture_end(pdc_cu *cu, cudaGraphExec_t *out);
pdc_status pdc_cu_replay(pdc_cu *cu, cudaGraphExec_t graph);
/* Fails with `reason` (PDC_ERR_DEVICE). */
pdc_status pdc_cu_refuse(const char *reason);
/* Waits for everything on the stream. */
pdc_status pdc_cu_finish(pdc_cu *cu);

#endif
