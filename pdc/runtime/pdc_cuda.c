/* pdc CUDA host runtime (see pdc_cuda.h). */
#include "pdc_cuda.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static char last_error[512];

const char *pdc_cuda_error(void) { return last_error; }

static pdc_status fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return PDC_ERR_DEVICE;
}

#define CU_CHECK(call, what)                                                                        \
    do {                                                                                            \
        cudaError_t e_ = (call);                                                                    \
        if (e_ != cudaSuccess) {                                                                    \
            (void)cudaGetLastError(); /* clear a sticky-free error for the next call */              \
            return fail("CUDA: %s failed: %s (%s)", what, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
        }                                                                                           \
    } while (0)

pdc_status pdc_cu_open(pdc_cu *cu, int arch, const char *target) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0))
        return fail("no CUDA GPU on this machine (%s bundles run on an NVIDIA GPU)", target);
    if (e == cudaErrorInsufficientDriver)
        return fail("no usable NVIDIA driver on this machine (%s): install the GPU driver (libcuda)", target);
    CU_CHECK(e, "cudaGetDeviceCount");
    const char *pick = getenv("PDC_CUDA_DEVICE");
    cu->device = pick && *pick ? atoi(pick) : 0;
    if (cu->device < 0 || cu->device >= count)
        return fail("PDC_CUDA_DEVICE=%d: this machine has %d CUDA GPU(s)", cu->device, count);
    struct cudaDeviceProp prop;
    CU_CHECK(cudaGetDeviceProperties(&prop, cu->device), "cudaGetDeviceProperties");
    const int have = prop.major * 10 + prop.minor;
    /* cubins run on GPUs of the same major version and a minor at least the compiled one */
    if (prop.major != arch / 10 || have < arch)
        return fail("%s was compiled for sm_%d; GPU %d (%s) is sm_%d: compile with --target cuda-sm%d",
                    target, arch, cu->device, prop.name, have, have);
    CU_CHECK(cudaSetDevice(cu->device), "cudaSetDevice");
    CU_CHECK(cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    cu->open = 1;
    last_error[0] = 0;
    return PDC_OK;
}

void pdc_cu_close(pdc_cu *cu) {
    if (cu->open) cudaStreamDestroy(cu->stream);
    cu->open = 0;
}

pdc_status pdc_cu_alloc(pdc_cu *cu, size_t bytes, const void *host, const char *what, void **out) {
    (void)cu;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        *out = NULL;
        return fail("out of device memory: the %s needs %zu bytes, the GPU has %zu of %zu free", what, bytes,
                    free_b, total);
    }
    CU_CHECK(e, "cudaMalloc");
    if (host && bytes) CU_CHECK(cudaMemcpy(*out, host, bytes, cudaMemcpyHostToDevice), "uploading the weights");
    return PDC_OK;
}

void pdc_cu_free(void *p) {
    if (p) cudaFree(p);
}

pdc_status pdc_cu_launch(pdc_cu *cu, const void *fn, const unsigned grid[3], const unsigned block[3], void **args) {
    dim3 g = {grid[0], grid[1], grid[2]}, b = {block[0], block[1], block[2]};
    CU_CHECK(cudaLaunchKernel(fn, g, b, args, 0, cu->stream), "a kernel launch");
    return PDC_OK;
}

pdc_status pdc_cu_copy(pdc_cu *cu, void *dst, const void *src, size_t bytes) {
    if (!bytes) return PDC_OK;
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cu->stream), "a copy");
    CU_CHECK(cudaStreamSynchronize(cu->stream), "a copy");
    return PDC_OK;
}

pdc_status pdc_cu_zero(pdc_cu *cu, void *dst, size_t bytes) {
    CU_CHECK(cudaMemsetAsync(dst, 0, bytes, cu->stream), "cudaMemsetAsync");
    return PDC_OK;
}

pdc_status pdc_cu_capture_begin(pdc_cu *cu) {
    CU_CHECK(cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    return PDC_OK;
}

pdc_status pdc_cu_capture_end(pdc_cu *cu, cudaGraphExec_t *out) {
    cudaGraph_t graph = NULL;
    CU_CHECK(cudaStreamEndCapture(cu->stream, &graph), "cudaStreamEndCapture");
    cudaError_t e = cudaGraphInstantiate(out, graph, 0);
    cudaGraphDestroy(graph);
    CU_CHECK(e, "cudaGraphInstantiate");
    return PDC_OK;
}

pdc_status pdc_cu_replay(pdc_cu *cu, cudaGraphExec_t graph) {
    CU_CHECK(cudaGraphLaunch(graph, cu->stream), "cudaGraphLaunch");
    return PDC_OK;
}

pdc_status pdc_cu_refuse(const char *reason) { return fail("%s", reason); }

pdc_status pdc_cu_finish(pdc_cu *cu) {
    CU_CHECK(cudaStreamSynchronize(cu->stream), "a run");
    return PDC_OK;
}
