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
    case PDC_ERR_ARENA_SIZE: return "the arena is smaller than the model needs";
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
 * variable, so short kernels don't pay a wake-up and idle workers don't steal a core.
 * One dispatch at a time owns the pool (`busy`); a call that finds it owned runs its loop on its
 * own thread, so runs from several threads (each with its own arena) are safe and never wait on
 * each other. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define PDC_MAX_THREADS 64
#define PDC_SPIN_ITERS 400000 /* roughly 0.5 ms: longer than most gaps between parallel kernels */
#define PDC_WAIT_SPINS 4096   /* then the dispatcher yields its core to a worker still to run */

static struct {
    atomic_int count;
    pthread_t threads[PDC_MAX_THREADS];
    pthread_mutex_t lock;       /* with `wake`: sleeping workers */
    pthread_cond_t wake;
    pthread_mutex_t busy;       /* held by the dispatch in flight, and by init / shutdown */
    atomic_uint generation;
    unsigned first_generation; /* the generation when the workers started */
    atomic_int pending;
    atomic_int stop;
    /* the dispatch in flight: written under `busy` before the generation is bumped */
    pdc_task_fn fn;
    pdc_slot_task_fn slot_fn; /* instead of fn for pdc_parallel_slots */
    void *ctx;
    int64_t n;
    int active; /* threads that take a slice: the first `active` of the pool */
} pool = {1, {0}, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
          0, 0, 0, 0, 0, 0, 0, 0, 1};

static void run_slice(int index) {
    if (index >= pool.active) return;
    int64_t per = (pool.n + pool.active - 1) / pool.active;
    int64_t begin = per * index, end = begin + per;
    if (end > pool.n) end = pool.n;
    if (begin >= end) return;
    if (pool.slot_fn) pool.slot_fn(pool.ctx, begin, end, index);
    else pool.fn(pool.ctx, begin, end);
}

/* Waits for a generation other than `seen` (or stop): spinning first, then asleep. */
static unsigned next_generation(unsigned seen) {
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
    return gen;
}

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg;
    unsigned seen = pool.first_generation; /* not the current one: a dispatch may come first */
    for (;;) {
        seen = next_generation(seen);
        if (atomic_load(&pool.stop)) return 0;
        run_slice(index);
        atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel);
    }
}

/* Stops and joins the workers; the caller holds `busy`. */
static void stop_workers(void) {
    const int count = atomic_load(&pool.count);
    if (count <= 1) return;
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.stop, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 1; i < count; i++) pthread_join(pool.threads[i], 0);
    atomic_store(&pool.count, 1);
    atomic_store(&pool.stop, 0);
}

/* Starts workers 1..num_threads-1; the caller holds `busy` and the pool has none. */
static pdc_status start_workers(int num_threads) {
    pool.first_generation = atomic_load(&pool.generation);
    for (int i = 1; i < num_threads; i++) {
        if (pthread_create(&pool.threads[i], 0, worker, (void *)(intptr_t)i) != 0) {
            stop_workers();
            return PDC_ERR_THREADS;
        }
        atomic_store(&pool.count, i + 1);
    }
    return PDC_OK;
}

pdc_status pdc_threads_init(int num_threads) {
    if (num_threads <= 0) num_threads = PDC_DEFAULT_THREADS;
    if (num_threads > PDC_MAX_THREADS) num_threads = PDC_MAX_THREADS;
    pthread_mutex_lock(&pool.busy); /* waits for a dispatch in flight */
    pdc_status status = PDC_OK;
    if (atomic_load(&pool.count) != num_threads) {
        stop_workers();
        status = start_workers(num_threads);
    }
    pthread_mutex_unlock(&pool.busy);
    return status;
}

int pdc_threads_count(void) { return atomic_load_explicit(&pool.count, memory_order_relaxed); }

/* Runs one parallel loop on the pool; the caller holds `busy`. */
static void dispatch(int64_t n, int active, pdc_task_fn fn, pdc_slot_task_fn slot_fn, void *ctx) {
    pool.fn = fn;
    pool.slot_fn = slot_fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.active = active;
    atomic_store(&pool.pending, atomic_load(&pool.count) - 1);
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_slice(0);
    /* workers never block inside a slice (a nested loop runs inline), so this ends */
    for (int spins = 0; atomic_load_explicit(&pool.pending, memory_order_acquire) > 0;)
        if (++spins > PDC_WAIT_SPINS) {
            sched_yield();
            spins = 0;
        }
}

/* Takes the pool for one loop over at most `want` threads; 0 (run inline) when the pool has one
 * thread or serves another call. On success the caller dispatches, then releases `busy`. */
static int claim_pool(int64_t n, int want) {
    if (n <= 1 || want <= 1 || pdc_threads_count() <= 1) return 0;
    if (pthread_mutex_trylock(&pool.busy) != 0) return 0;
    const int count = atomic_load(&pool.count);
    const int active = want < count ? want : count;
    if (active <= 1) pthread_mutex_unlock(&pool.busy);
    return active > 1 ? active : 0;
}

void pdc_parallel_for(int64_t n, pdc_task_fn fn, void *ctx) {
    const int active = claim_pool(n, PDC_MAX_THREADS);
    if (!active) {
        fn(ctx, 0, n);
        return;
    }
    dispatch(n, active, fn, 0, ctx);
    pthread_mutex_unlock(&pool.busy);
}

void pdc_parallel_slots(int64_t n, int slots, pdc_slot_task_fn fn, void *ctx) {
    const int active = claim_pool(n, slots);
    if (!active) {
        fn(ctx, 0, n, 0);
        return;
    }
    dispatch(n, active, 0, fn, ctx);
    pthread_mutex_unlock(&pool.busy);
}

void pdc_threads_shutdown(void) {
    pthread_mutex_lock(&pool.busy);
    stop_workers();
    pthread_mutex_unlock(&pool.busy);
}

#else /* single-threaded build: no pthreads needed (bare-metal targets) */

pdc_status pdc_threads_init(int num_threads) { (void)num_threads; return PDC_OK; }
int pdc_threads_count(void) { return 1; }
void pdc_parallel_for(int64_t n, pdc_task_fn fn, void *ctx) { fn(ctx, 0, n); }
void pdc_parallel_slots(int64_t n, int slots, pdc_slot_task_fn fn, void *ctx) { (void)slots; fn(ctx, 0, n, 0); }
void pdc_threads_shutdown(void) {}

#endif
