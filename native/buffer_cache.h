/* A cache of large array buffers for numpy (its NEP 49 allocator hooks): blocks freed by a decoding
 * step are handed to the next step's allocations of the same size instead of going back to the OS.
 *
 * Why: glibc serves an allocation above its mmap threshold with fresh pages (mmap, or a heap top
 * it trimmed when the last block was freed), so every decoding step page-faults and zeroes its
 * logits, FFN activations and attention scratch again: 11,000 faults per OPUS-MT batch-32 decode
 * through an engine, 24,000 per GPT-2 one, against 5-7 with this cache (benchmarks/engine_caches.py,
 * which also times both). Steps repeat their sizes, so an exact-size cache hits almost always.
 *
 * Contract: aio_bc_malloc / calloc / realloc / free behave as the C functions do (calloc zeroes,
 * realloc keeps the contents, free(NULL) is a no-op) and are thread-safe: a block allocated on one
 * thread may be freed on another. Each block carries its size in a 64-byte header (numpy's size
 * argument to free is not trusted), which also keeps the data 64-byte aligned. Blocks under
 * AIO_BC_MIN_BYTES bypass the cache; at most AIO_BC_SLOTS blocks and AIO_BC_MAX_BYTES bytes are
 * kept, the oldest given back first. */
#ifndef AIO_BUFFER_CACHE_H
#define AIO_BUFFER_CACHE_H

#include <stddef.h>

enum { AIO_BC_SLOTS = 64 };
#define AIO_BC_MIN_BYTES ((size_t)64 << 10)
#define AIO_BC_MAX_BYTES ((size_t)256 << 20)

void *aio_bc_malloc(size_t size);
void *aio_bc_calloc(size_t nelem, size_t elsize);
void *aio_bc_realloc(void *ptr, size_t size);
void aio_bc_free(void *ptr);
size_t aio_bc_cached_bytes(void);
void aio_bc_clear(void);

#endif
