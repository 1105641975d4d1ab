/* The buffer cache of buffer_cache.h: a fixed table of free blocks under one mutex (a few hundred
 * large allocations per decoding step: contention is negligible), searched for an exact size. */
#include "buffer_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { HEADER = 64 };
/* Blocks from 4 MiB on are 2 MiB aligned and asked for huge pages, as numpy's own allocator asks
 * (fewer TLB misses over KV caches and logits). */
#define HUGE_BYTES ((size_t)4 << 20)
#define HUGE_ALIGN ((size_t)2 << 20)

struct slot {
    void *block; /* the header's address; NULL: free slot */
    size_t size;
    uint64_t stamp; /* when it was cached: the oldest goes first */
};

static struct slot slots[AIO_BC_SLOTS];
static size_t cached_bytes;
static uint64_t clock_;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *new_block(size_t size) {
    void *block = NULL;
    int huge = size >= HUGE_BYTES;
    if (size > SIZE_MAX - HEADER || posix_memalign(&block, huge ? HUGE_ALIGN : HEADER, HEADER + size) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (huge) madvise(block, (HEADER + size) & ~(HUGE_ALIGN - 1), MADV_HUGEPAGE); /* a hint: errors ignored */
#endif
    *(size_t *)block = size;
    return (char *)block + HEADER;
}

static size_t size_of(void *ptr) { return *(size_t *)((char *)ptr - HEADER); }

/* A cached block of exactly `size` bytes, taken out of the table, or NULL. */
static void *take(size_t size) {
    void *found = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < AIO_BC_SLOTS; i++)
        if (slots[i].block && slots[i].size == size) {
            found = slots[i].block;
            slots[i].block = NULL;
            cached_bytes -= size;
            break;
        }
    pthread_mutex_unlock(&lock);
    return found ? (char *)found + HEADER : NULL;
}

void *aio_bc_malloc(size_t size) {
    void *p = size >= AIO_BC_MIN_BYTES ? take(size) : NULL;
    return p ? p : new_block(size);
}

void *aio_bc_calloc(size_t nelem, size_t elsize) {
    if (elsize && nelem > SIZE_MAX / elsize) return NULL;
    void *p = aio_bc_malloc(nelem * elsize); /* a reused block is dirty, a new one not zeroed either */
    return p ? memset(p, 0, nelem * elsize) : NULL;
}

void *aio_bc_realloc(void *ptr, size_t size) {
    if (!ptr) return aio_bc_malloc(size);
    size_t old = size_of(ptr);
    void *p = aio_bc_malloc(size);
    if (p) {
        memcpy(p, ptr, old < size ? old : size);
        aio_bc_free(ptr);
    }
    return p;
}

void aio_bc_free(void *ptr) {
    if (!ptr) return;
    void *block = (char *)ptr - HEADER;
    size_t size = size_of(ptr);
    if (size < AIO_BC_MIN_BYTES || size > AIO_BC_MAX_BYTES) {
        free(block);
        return;
    }
    void *evicted[AIO_BC_SLOTS];
    int n_evicted = 0;
    pthread_mutex_lock(&lock);
    /* Room for it: give back the oldest blocks until it fits, and take a free slot (or the oldest). */
    for (;;) {
        int oldest = -1, empty = -1;
        for (int i = 0; i < AIO_BC_SLOTS; i++) {
            if (!slots[i].block)
                empty = empty < 0 ? i : empty;
            else if (oldest < 0 || slots[i].stamp < slots[oldest].stamp)
                oldest = i;
        }
        if (empty >= 0 && cached_bytes + size <= AIO_BC_MAX_BYTES) {
            slots[empty] = (struct slot){block, size, ++clock_};
            cached_bytes += size;
            break;
        }
        evicted[n_evicted++] = slots[oldest].block; /* oldest >= 0: the table is not empty here */
        cached_bytes -= slots[oldest].size;
        slots[oldest].block = NULL;
    }
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n_evicted; i++) free(evicted[i]);
}

size_t aio_bc_cached_bytes(void) {
    pthread_mutex_lock(&lock);
    size_t n = cached_bytes;
    pthread_mutex_unlock(&lock);
    return n;
}

void aio_bc_clear(void) {
    void *blocks[AIO_BC_SLOTS];
    int n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < AIO_BC_SLOTS; i++)
        if (slots[i].block) {
            blocks[n++] = slots[i].block;
            slots[i].block = NULL;
        }
    cached_bytes = 0;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++) free(blocks[i]);
}
