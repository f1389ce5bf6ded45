/* pdc thin runtime: status codes, tensor descriptors, arena helpers and a small thread pool.
 * C99. No allocation on the inference path: the pool's threads are created once by
 * pdc_threads_init and the arena is memory the caller owns.
 *
 * Threads: runs of a model are re-entrant as long as each concurrent run has its own arena (a
 * context). The pool is shared by the process but never by two kernels at once: a parallel loop
 * started while the pool is busy (another thread's run, or a loop nested in a task) runs on its
 * calling thread instead of waiting, so concurrent runs neither block each other nor deadlock.
 * pdc_threads_init and pdc_threads_shutdown must not race with runs. */
#ifndef PDC_RUNTIME_H
#define PDC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PDC_OK = 0,
    PDC_ERR_NULL_ARGUMENT = 1,   /* a required pointer was NULL */
    PDC_ERR_MISALIGNED = 2,      /* the arena is not PDC_ALIGNMENT-byte aligned */
    PDC_ERR_WEIGHTS = 3,         /* the weights file is missing, short or corrupt */
    PDC_ERR_THREADS = 4,         /* the thread pool could not start */
    PDC_ERR_INTERNAL = 5,
    PDC_ERR_INDEX = 6,           /* an input holds an index out of its range (gather, scatter...) */
    PDC_ERR_ARENA_SIZE = 7,      /* the arena given to a context is smaller than the model needs */
    PDC_ERR_DEVICE = 8,          /* the accelerator failed: no device, a kernel build, out of device memory */
    PDC_ERR_VALUE = 9,           /* an input holds a value outside what its op allows (TopK's K, an IoU threshold) */
    PDC_ERR_SIZE = 10            /* a run-time size is outside the range the model was compiled for */
} pdc_status;

/* Element types, numbered as in ONNX's TensorProto.DataType. */
typedef enum {
    PDC_FLOAT32 = 1, PDC_UINT8 = 2, PDC_INT8 = 3, PDC_UINT16 = 4, PDC_INT16 = 5, PDC_INT32 = 6,
    PDC_INT64 = 7, PDC_BOOL = 9, PDC_FLOAT16 = 10, PDC_FLOAT64 = 11, PDC_UINT32 = 12, PDC_UINT64 = 13,
    PDC_BFLOAT16 = 16
} pdc_dtype;

/* Describes one model input or output. */
typedef struct {
    const char *name;      /* the model's tensor name (may contain any characters) */
    pdc_dtype dtype;
    int rank;
    const int64_t *shape;  /* rank entries */
    size_t bytes;          /* size of the whole tensor */
} pdc_tensor_info;

#define PDC_ALIGNMENT 64

const char *pdc_status_string(pdc_status status);
size_t pdc_dtype_size(pdc_dtype dtype);

/* Rounds n up to a multiple of PDC_ALIGNMENT. */
static inline size_t pdc_align(size_t n) { return (n + PDC_ALIGNMENT - 1) & ~(size_t)(PDC_ALIGNMENT - 1); }
static inline int pdc_is_aligned(const void *p) { return ((uintptr_t)p & (PDC_ALIGNMENT - 1)) == 0; }

/* ---- thread pool ----------------------------------------------------------------------------
 * pdc_parallel_for(n, fn, ctx) calls fn(ctx, begin, end) over a partition of [0, n) into chunks
 * (a few per thread) that the calling thread and the workers claim as they come. With one thread (or without
 * PDC_THREADS at build time), or while the pool serves another call, it is a plain call
 * fn(ctx, 0, n) on the calling thread: tasks must accept any range. */
typedef void (*pdc_task_fn)(void *ctx, int64_t begin, int64_t end);
/* pdc_parallel_slots(n, slots, fn, ctx) is pdc_parallel_for over at most `slots` threads, telling
 * each call its thread's slot (0 <= slot < slots, distinct among concurrent calls): kernels give
 * each slot its own part of a scratch buffer the memory plan sized for the compiled thread count. */
typedef void (*pdc_slot_task_fn)(void *ctx, int64_t begin, int64_t end, int slot);

pdc_status pdc_threads_init(int num_threads);  /* 0: use PDC_DEFAULT_THREADS or 1 */
int pdc_threads_count(void);
void pdc_parallel_for(int64_t n, pdc_task_fn fn, void *ctx);
void pdc_parallel_slots(int64_t n, int slots, pdc_slot_task_fn fn, void *ctx);
/* The threads pdc_parallel_slots(n, slots, ...) runs on. */
static inline int pdc_slot_threads(int slots) {
    const int n = pdc_threads_count();
    return n < slots ? n : slots;
}
void pdc_threads_shutdown(void);

/* The sizes of the run in progress on this thread, for a model compiled with dims known only at
 * run time (--shape batch=1..8): NAME_run_dims points it at the run's sizes while its kernels run,
 * and the thread pool hands it to the workers that take the run's chunks. */
#if defined(PDC_THREADS) && PDC_THREADS && defined(__cplusplus)
#define PDC_THREAD_LOCAL thread_local
#elif defined(PDC_THREADS) && PDC_THREADS
#define PDC_THREAD_LOCAL _Thread_local
#else
#define PDC_THREAD_LOCAL
#endif
extern PDC_THREAD_LOCAL const int64_t *pdc_dims;

#ifdef __cplusplus
}
#endif
#endif /* PDC_RUNTIME_H */
