/* pdc thin runtime; see pdc_runtime.h. */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime under a strict -std=c11 */
#endif
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
    case PDC_ERR_DEVICE: return "the accelerator failed";
    case PDC_ERR_VALUE: return "an input holds a value outside what its op allows";
    case PDC_ERR_SIZE: return "a size is outside the range the model was compiled for";
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

PDC_THREAD_LOCAL const int64_t *pdc_dims; /* thread-local where the pool runs (pdc_runtime.h) */

#if defined(PDC_THREADS) && PDC_THREADS
/* A persistent pool: workers spin briefly on a generation counter, then sleep on a condition
 * variable, so short kernels don't pay a wake-up and idle workers don't steal a core.
 * A loop is cut into chunks (a few per thread) that the caller and the workers claim from one
 * counter: a worker the OS has not scheduled (a busy or shared machine) leaves its chunks to the
 * threads that run, and the caller waits only for chunks in progress, never for a sleeping worker.
 * One dispatch at a time owns the pool (`busy`); a call that finds it owned runs its loop on its
 * own thread, so runs from several threads (each with its own arena) are safe and never wait on
 * each other. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define PDC_MAX_THREADS 64
#ifndef PDC_SPIN_US
#define PDC_SPIN_US 500 /* longer than most gaps between parallel kernels */
#endif
#define PDC_WAIT_SPINS 4096   /* then the dispatcher yields its core to a worker finishing a chunk */
#define PDC_CHUNKS_PER_THREAD 4
#define PDC_TAG_SHIFT 40      /* claims: the dispatch's tag above, the next index below */
#define PDC_INDEX_MASK ((1ull << PDC_TAG_SHIFT) - 1)
#define PDC_TAG_MASK ((1ull << (64 - PDC_TAG_SHIFT)) - 1)
#define PDC_CLOSED PDC_INDEX_MASK  /* the index of a dispatch whose fields are being written */

static struct {
    atomic_int count;
    pthread_t threads[PDC_MAX_THREADS];
    pthread_mutex_t lock;       /* with `wake`: sleeping workers */
    pthread_cond_t wake;
    pthread_mutex_t busy;       /* held by the dispatch in flight, and by init / shutdown */
    atomic_uint generation;
    unsigned first_generation; /* the generation when the workers started */
    atomic_int stop;
    atomic_ullong claim;        /* (tag << PDC_TAG_SHIFT) | next unclaimed index of the dispatch */
    atomic_llong done;          /* indices finished */
    /* the dispatch in flight, written under `busy` while `claim` reads PDC_CLOSED: the sizes are
       read before a claim (atomics: a late worker may read the next dispatch's, and its claim
       then fails), the functions after one (while a chunk is unfinished they cannot change) */
    atomic_llong n, chunk;
    atomic_int active; /* threads that take chunks: the first `active` of the pool */
    pdc_task_fn fn;
    pdc_slot_task_fn slot_fn; /* instead of fn for pdc_parallel_slots */
    void *ctx;
    const int64_t *dims; /* the dispatching run's pdc_dims */
} pool = {1, {0}, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
          0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};

/* Claims and runs chunks of the dispatch tagged `tag` until none is left. */
static void run_chunks(int index, unsigned long long tag) {
    for (;;) {
        unsigned long long cur = atomic_load_explicit(&pool.claim, memory_order_acquire);
        const int64_t n = atomic_load_explicit(&pool.n, memory_order_relaxed);
        const int64_t chunk = atomic_load_explicit(&pool.chunk, memory_order_relaxed);
        const int active = atomic_load_explicit(&pool.active, memory_order_relaxed);
        /* sizes written by a later dispatch: its PDC_CLOSED store is then visible to the claim */
        atomic_thread_fence(memory_order_acquire);
        const int64_t begin = (int64_t)(cur & PDC_INDEX_MASK);
        if ((cur >> PDC_TAG_SHIFT) != tag || begin >= n || index >= active) return;
        if (!atomic_compare_exchange_strong_explicit(&pool.claim, &cur, cur + (unsigned long long)chunk,
                                                     memory_order_acq_rel, memory_order_acquire))
            continue;
        const int64_t end = begin + chunk < n ? begin + chunk : n;
        pdc_dims = pool.dims;
        if (pool.slot_fn) pool.slot_fn(pool.ctx, begin, end, index);
        else pool.fn(pool.ctx, begin, end);
        atomic_fetch_add_explicit(&pool.done, end - begin, memory_order_release);
    }
}

static int64_t pdc_now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Waits for a generation other than `seen` (or stop): spinning for PDC_SPIN_US (timed: a count of
 * spins took 0.5 ms on one machine and 0.1 ms on another), then asleep. */
static unsigned next_generation(unsigned seen) {
    unsigned gen;
    int spins = 0;
    int64_t since = pdc_now_us();
    while ((gen = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen &&
           !atomic_load(&pool.stop)) {
        if ((++spins & 1023) == 0 && pdc_now_us() - since > PDC_SPIN_US) {
            pthread_mutex_lock(&pool.lock);
            while (atomic_load(&pool.generation) == seen && !atomic_load(&pool.stop))
                pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
            since = pdc_now_us();
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
        /* the generation is the tag of the dispatch that set it (or of a later one: then the
           claims fail and this worker waits for the next generation) */
        run_chunks(index, seen & PDC_TAG_MASK);
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
    const unsigned gen = atomic_load_explicit(&pool.generation, memory_order_relaxed) + 1;
    const unsigned long long tag = gen & PDC_TAG_MASK;
    const int64_t chunks = (int64_t)active * PDC_CHUNKS_PER_THREAD;
    /* closed first: a late worker's claim on the previous dispatch fails from here on */
    atomic_store_explicit(&pool.claim, (tag << PDC_TAG_SHIFT) | PDC_CLOSED, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&pool.n, n, memory_order_relaxed);
    atomic_store_explicit(&pool.chunk, n / chunks + (n % chunks != 0), memory_order_relaxed);
    atomic_store_explicit(&pool.active, active, memory_order_relaxed);
    pool.fn = fn;
    pool.slot_fn = slot_fn;
    pool.ctx = ctx;
    pool.dims = pdc_dims;
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.claim, tag << PDC_TAG_SHIFT, memory_order_release);
    pthread_mutex_lock(&pool.lock);
    atomic_store_explicit(&pool.generation, gen, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_chunks(0, tag);
    /* every index is claimed: wait for the chunks still running (workers never block in one) */
    for (int spins = 0; atomic_load_explicit(&pool.done, memory_order_acquire) < n;)
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
