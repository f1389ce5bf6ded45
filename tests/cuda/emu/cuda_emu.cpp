/* The CUDA emulator's runtime (see cuda_runtime_api.h): device memory is host memory, a stream runs
 * everything at once, a captured graph is the list of its launches, and a launch runs its blocks one
 * after the other, the threads of a block as fibers (ucontext) that switch at __syncthreads. It checks
 * what a GPU refuses: block and grid limits, a __syncthreads some threads of a block never reach. */
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "pdc_cuda_emu.h"

extern "C" {
uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
}

namespace {
struct Launch {
    const pdc_emu::Entry *entry;
    dim3 grid, block;
    std::vector<void *> values;  // the arguments' values, copied as CUDA copies them
};
struct Graph {
    std::vector<Launch> launches;
};

std::mutex lock;
cudaError_t last = cudaSuccess;
std::map<void *, size_t> allocations;
size_t allocated = 0;
Graph *capturing = nullptr;

size_t env_size(const char *name, size_t fallback) {
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, nullptr, 10) : fallback;
}
size_t memory() { return env_size("PDC_CUDA_EMU_MEMORY", (size_t)16 << 30); }

cudaError_t fail(cudaError_t e) { return last = e; }

// ---- fibers ------------------------------------------------------------------------------------
constexpr size_t STACK = 256 << 10;
enum State { READY, AT_BARRIER, DONE };
struct Fiber {
    ucontext_t ctx;
    char *stack = nullptr;
    uint3 tid;
    State state;
};
ucontext_t scheduler;
Fiber *current;
const pdc_emu::Entry *running;
void **running_args;

void fiber_main() {
    running->invoke(running, running_args);
    current->state = DONE;
}

cudaError_t run(const Launch &l) {
    const unsigned n = l.block.x * l.block.y * l.block.z;
    if (!n || !l.grid.x || !l.grid.y || !l.grid.z || n > 1024 || l.block.z > 64 || l.grid.y > 65535 ||
        l.grid.z > 65535)
        return fail(cudaErrorInvalidValue);
    static std::vector<Fiber> fibers(1024);
    gridDim = l.grid;
    blockDim = l.block;
    running = l.entry;
    std::vector<void *> values = l.values;
    std::vector<void *> args(values.size());
    for (size_t i = 0; i < values.size(); i++) args[i] = &values[i];
    running_args = args.data();
    for (unsigned bz = 0; bz < l.grid.z; bz++)
        for (unsigned by = 0; by < l.grid.y; by++)
            for (unsigned bx = 0; bx < l.grid.x; bx++) {
                blockIdx = {bx, by, bz};
                for (unsigned t = 0; t < n; t++) {
                    Fiber &f = fibers[t];
                    if (!f.stack) f.stack = static_cast<char *>(malloc(STACK));
                    f.tid = {t % l.block.x, t / l.block.x % l.block.y, t / (l.block.x * l.block.y)};
                    f.state = READY;
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack;
                    f.ctx.uc_stack.ss_size = STACK;
                    f.ctx.uc_link = &scheduler;
                    makecontext(&f.ctx, fiber_main, 0);
                }
                for (;;) {
                    unsigned done = 0, waiting = 0;
                    for (unsigned t = 0; t < n; t++) {
                        Fiber &f = fibers[t];
                        if (f.state == READY) {
                            current = &f;
                            threadIdx = f.tid;
                            swapcontext(&scheduler, &f.ctx);
                        }
                        done += f.state == DONE;
                        waiting += f.state == AT_BARRIER;
                    }
                    if (done == n) break;
                    if (done) {  // some threads left the kernel, others wait at a barrier: a hang on a GPU
                        fprintf(stderr, "cuda emulator: __syncthreads not reached by every thread of a block\n");
                        return fail(cudaErrorLaunchFailure);
                    }
                    for (unsigned t = 0; t < n; t++) fibers[t].state = READY;  // everyone arrived: go on
                }
            }
    return cudaSuccess;
}
}  // namespace

extern "C" {
void pdc_emu_syncthreads(void) {
    current->state = AT_BARRIER;
    swapcontext(&current->ctx, &scheduler);
}

cudaError_t cudaGetDeviceCount(int *count) {
    *count = (int)env_size("PDC_CUDA_EMU_DEVICES", 1);
    return *count ? cudaSuccess : fail(cudaErrorNoDevice);
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
    int count;
    if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count) return fail(cudaErrorInvalidDevice);
    const int arch = (int)env_size("PDC_CUDA_EMU_ARCH", 80);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "pdc CUDA emulator");
    prop->totalGlobalMem = memory();
    prop->major = arch / 10;
    prop->minor = arch % 10;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int) {
    *stream = reinterpret_cast<cudaStream_t>(new char);
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    delete reinterpret_cast<char *>(stream);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaMalloc(void **p, size_t bytes) {
    std::lock_guard<std::mutex> g(lock);
    if (allocated + bytes > memory()) return fail(cudaErrorMemoryAllocation);
    *p = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!*p) return fail(cudaErrorMemoryAllocation);
    allocations[*p] = bytes;
    allocated += bytes;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    std::lock_guard<std::mutex> g(lock);
    auto it = allocations.find(p);
    if (it == allocations.end()) return fail(cudaErrorInvalidValue);
    allocated -= it->second;
    allocations.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    *total = memory();
    *free_bytes = memory() - allocated;
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind) {
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    if (capturing) return fail(cudaErrorStreamCaptureUnsupported);  // pdc captures launches only
    return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t) {
    if (capturing) return fail(cudaErrorStreamCaptureUnsupported);
    memset(dst, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaLaunchKernel(const void *fn, dim3 grid, dim3 block, void **args, size_t, cudaStream_t) {
    const auto *entry = static_cast<const pdc_emu::Entry *>(fn);
    Launch l{entry, grid, block, {}};
    for (int i = 0; i < entry->arity; i++) l.values.push_back(*static_cast<void **>(args[i]));
    if (capturing) {
        capturing->launches.push_back(l);
        return cudaSuccess;
    }
    return run(l);
}

cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
    if (capturing) return fail(cudaErrorInvalidValue);
    capturing = new Graph;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *graph) {
    if (!capturing) return fail(cudaErrorInvalidValue);
    *graph = reinterpret_cast<cudaGraph_t>(capturing);
    capturing = nullptr;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
    *exec = reinterpret_cast<cudaGraphExec_t>(new Graph(*reinterpret_cast<Graph *>(graph)));
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
    for (const Launch &l : reinterpret_cast<Graph *>(exec)->launches) {
        cudaError_t e = run(l);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete reinterpret_cast<Graph *>(graph);
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete reinterpret_cast<Graph *>(exec);
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last;
    last = cudaSuccess;
    return e;
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    }
    return "unknown error";
}
}
