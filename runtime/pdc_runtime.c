/* pdc thin runtime; see pdc_runtime.h. */
#include "pdc_runtime.h"

const char *pdc_status_string(pdc_status status) {
    switch (status) {
    case PDC_OK: return "ok";
    case PDC_ERR_NULL_ARGUMENT: return "a required pointer was NULL";
    case PDC_ERR_MISALIGNED: return "the arena is not 64-byte aligned";
    case PDC_ERR_WEIGHTS: return "the weights file is missing, short or corrupt";
    case PDC_ERR_THREADS: return "the thread pool could not start";
    case PDC_ERR_INDEX: return "an input holds an index out of its range";
    default: return "internal error";
    }
}

size_t pdc_dtype_size(pdc_dtype dtype) {
    switch (dtype) {
    case PDC_UINT8: case PDC_INT8: case PDC_BOOL: return 1;
    case PDC_UINT16: case PDC_INT16: case PDC_FLOAT16: case PDC_BFLOAT16: return 2;
    case PDC_FLOAT32: case PDC_INT32: case PDC_UINT32: return 4;
    case PDC_INT64: case PDC_FLOAT64: case PDC_UINT64: return 8;
    }
    return 0;
}

#ifndef PDC_DEFAULT_THREADS
#define PDC_DEFAULT_THREADS 1
#endif

#if defined(PDC_THREADS) && PDC_THREADS
/* A persistent pool: workers spin briefly on a generation counter, then sleep on a condition
 * variable, so short kernels don't pay a wake-up and idle workers don't steal a core. */
#include <pthread.h>
#include <stdatomic.h>

#define PDC_MAX_THREADS 64
#define PDC_SPIN_ITERS 400000 /* roughly 0.5 ms: longer than most gaps between parallel kernels */

static struct {
    int count;
    pthread_t threads[PDC_MAX_THREADS];
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation;
    atomic_int pending;
    atomic_int stop;
    pdc_task_fn fn;
    pdc_slot_task_fn slot_fn; /* instead of fn for pdc_parallel_slots */
    void *ctx;
    int64_t n;
    int active; /* threads that take a slice: the first `active` of the pool */
} pool = {1, {0}, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, 1};

static void run_slice(int index) {
    if (index >= pool.active) return;
    int64_t per = (pool.n + pool.active - 1) / pool.active;
    int64_t begin = per * index, end = begin + per;
    if (end > pool.n) end = pool.n;
    if (begin >= end) return;
    if (pool.slot_fn) pool.slot_fn(pool.ctx, begin, end, index);
    else pool.fn(pool.ctx, begin, end);
}

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen &&
               !atomic_load(&pool.stop)) {
            if (++spins > PDC_SPIN_ITERS) {
                pthread_mutex_lock(&pool.lock);
                while (atomic_load(&pool.generation) == seen && !atomic_load(&pool.stop))
                    pthread_cond_wait(&pool.wake, &pool.lock);
                pthread_mutex_unlock(&pool.lock);
                spins = 0;
            }
        }
        if (atomic_load(&pool.stop)) return 0;
        seen = gen;
        run_slice(index);
        atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel);
    }
}

pdc_status pdc_threads_init(int num_threads) {
    if (num_threads <= 0) num_threads = PDC_DEFAULT_THREADS;
    if (num_threads > PDC_MAX_THREADS) num_threads = PDC_MAX_THREADS;
    if (pool.count == num_threads) return PDC_OK;
    pdc_threads_shutdown();
    atomic_store(&pool.stop, 0);
    for (int i = 1; i < num_threads; i++) {
        if (pthread_create(&pool.threads[i], 0, worker, (void *)(intptr_t)i) != 0) {
            pool.count = i;
            pdc_threads_shutdown();
            return PDC_ERR_THREADS;
        }
        pool.count = i + 1;
    }
    pool.count = num_threads;
    return PDC_OK;
}

int pdc_threads_count(void) { return pool.count; }

static void dispatch(int64_t n, int active, pdc_task_fn fn, pdc_slot_task_fn slot_fn, void *ctx) {
    pool.fn = fn;
    pool.slot_fn = slot_fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.active = active;
    atomic_store(&pool.pending, pool.count - 1);
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_slice(0);
    while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) {
    }
}

void pdc_parallel_for(int64_t n, pdc_task_fn fn, void *ctx) {
    if (pool.count <= 1 || n <= 1) fn(ctx, 0, n);
    else dispatch(n, pool.count, fn, 0, ctx);
}

void pdc_parallel_slots(int64_t n, int slots, pdc_slot_task_fn fn, void *ctx) {
    const int active = slots < pool.count ? slots : pool.count;
    if (active <= 1 || n <= 1) fn(ctx, 0, n, 0);
    else dispatch(n, active, 0, fn, ctx);
}

void pdc_threads_shutdown(void) {
    if (pool.count <= 1) return;
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.stop, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 1; i < pool.count; i++) pthread_join(pool.threads[i], 0);
    pool.count = 1;
    atomic_store(&pool.stop, 0);
}

#else /* single-threaded build: no pthreads needed (bare-metal targets) */

pdc_status pdc_threads_init(int num_threads) { (void)num_threads; return PDC_OK; }
int pdc_threads_count(void) { return 1; }
void pdc_parallel_for(int64_t n, pdc_task_fn fn, void *ctx) { fn(ctx, 0, n); }
void pdc_parallel_slots(int64_t n, int slots, pdc_slot_task_fn fn, void *ctx) { (void)slots; fn(ctx, 0, n, 0); }
void pdc_threads_shutdown(void) {}

#endif
