# numpy's array-data allocator for the engines' worker threads: buffer_cache.c behind numpy's
# NEP 49 hooks (PyDataMem_SetHandler), which a thread installs for its own context only.
from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport uint8_t
from libc.string cimport strncpy

cdef extern from "buffer_cache.h" nogil:
    void *aio_bc_malloc(size_t size)
    void *aio_bc_calloc(size_t nelem, size_t elsize)
    void *aio_bc_realloc(void *ptr, size_t size)
    void aio_bc_free(void *ptr)
    size_t aio_bc_cached_bytes()
    void aio_bc_clear()

cdef extern from "numpy/arrayobject.h":
    ctypedef struct PyDataMemAllocator:
        void *ctx
        void *(*malloc)(void *ctx, size_t size) noexcept nogil
        void *(*calloc)(void *ctx, size_t nelem, size_t elsize) noexcept nogil
        void *(*realloc)(void *ctx, void *ptr, size_t new_size) noexcept nogil
        void (*free)(void *ctx, void *ptr, size_t size) noexcept nogil
    ctypedef struct PyDataMem_Handler:
        char name[127]
        uint8_t version
        PyDataMemAllocator allocator
    object PyDataMem_SetHandler(object handler)
    int _import_array() except -1

_import_array()

cdef void *_malloc(void *ctx, size_t size) noexcept nogil:
    return aio_bc_malloc(size)

cdef void *_calloc(void *ctx, size_t nelem, size_t elsize) noexcept nogil:
    return aio_bc_calloc(nelem, elsize)

cdef void *_realloc(void *ctx, void *ptr, size_t size) noexcept nogil:
    return aio_bc_realloc(ptr, size)

cdef void _free(void *ctx, void *ptr, size_t size) noexcept nogil:
    aio_bc_free(ptr)  # the block's own header holds its size

HANDLER_NAME = "aiotranslate_buffer_cache"

cdef PyDataMem_Handler _handler
strncpy(_handler.name, HANDLER_NAME.encode(), 126)
_handler.version = 1
_handler.allocator.ctx = NULL
_handler.allocator.malloc = _malloc
_handler.allocator.calloc = _calloc
_handler.allocator.realloc = _realloc
_handler.allocator.free = _free


def install():
    """Allocate the data of the arrays this thread (its current context) creates from now on through
    the buffer cache; returns the handler it replaces (a capsule). Arrays remember their allocator, so
    any thread may free them."""
    return PyDataMem_SetHandler(PyCapsule_New(&_handler, b"mem_handler", NULL))


def cached_bytes():
    """Bytes held in the cache, ready for reuse."""
    return aio_bc_cached_bytes()


def clear():
    """Give every cached block back to the C allocator."""
    aio_bc_clear()
