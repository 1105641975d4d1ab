"""A stand-in for cupy on a machine without a GPU: the "device" arrays are host arrays behind a
wrapper that, like cupy's, refuses to turn into a numpy array implicitly and refuses numpy operands
and numpy index arrays. The "CUDA kernels" are the CPU kernels applied to the wrapped arrays.

So a model moved with `to_device` and run through the engines exercises every device-side path of
the shared model code (allocation in the input's namespace, host indices placed on the device,
explicit host transfers) and fails where that code would hand a device array to numpy. It checks
the plumbing, not the CUDA kernels (tests/backends/test_cuda_ops.py does, on a GPU).
"""

from __future__ import annotations

import contextlib
import types

import numpy as np

from aiotranslate import _native
from aiotranslate.ops import reference


class ndarray:  # noqa: N801 - cupy's name, which `backends.is_cuda_array` looks for
    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (fake cupy)")

    def get(self, stream=None) -> np.ndarray:
        return self._a.copy()

    # -- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    T = property(lambda self: ndarray(self._a.T))
    base = property(lambda self: None if self._a.base is None else ndarray(self._a.base))
    flags = property(lambda self: types.SimpleNamespace(c_contiguous=self._a.flags.c_contiguous))
    data = property(lambda self: types.SimpleNamespace(ptr=self._a.__array_interface__["data"][0]))

    def __len__(self) -> int:
        return len(self._a)

    # -- methods
    def reshape(self, *shape):
        return ndarray(self._a.reshape(*shape))

    def transpose(self, *axes):
        return ndarray(self._a.transpose(*axes))

    def astype(self, dtype, copy=True):
        return ndarray(self._a.astype(dtype, copy=copy))

    def copy(self):
        return ndarray(self._a.copy())

    def mean(self, axis=None):
        return ndarray(np.asarray(self._a.mean(axis=axis)))

    def max(self, *args, **kwargs):
        return ndarray(np.asarray(self._a.max(*args, **kwargs)))

    def min(self, *args, **kwargs):
        return ndarray(np.asarray(self._a.min(*args, **kwargs)))

    def any(self):
        return ndarray(np.asarray(self._a.any()))

    def all(self):
        return ndarray(np.asarray(self._a.all()))

    def __int__(self) -> int:
        return int(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    # -- indexing: device or Python indices only, as a strict cupy
    def __getitem__(self, index):
        return ndarray(self._a[_index(index)])

    def __setitem__(self, index, value) -> None:
        self._a[_index(index)] = _operand(value)

    # -- arithmetic
    def _binary(name):  # noqa: N805
        def method(self, other):
            return ndarray(getattr(self._a, name)(_operand(other)))

        return method

    for _name in ("__add__", "__radd__", "__sub__", "__mul__", "__rmul__", "__truediv__", "__lt__", "__le__",
                  "__gt__", "__ge__", "__eq__", "__ne__", "__or__", "__and__", "__floordiv__", "__mod__"):  # fmt: skip
        locals()[_name] = _binary(_name)

    def __iadd__(self, other):
        self._a += _operand(other)
        return self

    def __imul__(self, other):
        self._a *= _operand(other)
        return self

    def __neg__(self):
        return ndarray(-self._a)

    def __invert__(self):
        return ndarray(~self._a)

    __hash__ = None


ndarray.__module__ = "cupy"


def _operand(x):
    if isinstance(x, np.ndarray) and x.ndim:
        raise TypeError("Unsupported type <class 'numpy.ndarray'> (fake cupy: move it to the device)")
    return x._a if isinstance(x, ndarray) else x


def _index(index):
    parts = index if isinstance(index, tuple) else (index,)
    for part in parts:
        if isinstance(part, (np.ndarray, list)):
            raise TypeError("a host index array on a device array (fake cupy: place it on the device)")
    unwrapped = tuple(p._a if isinstance(p, ndarray) else p for p in parts)
    return unwrapped if isinstance(index, tuple) else unwrapped[0]


def _host(x):
    return x._a if isinstance(x, ndarray) else x


# -- the cupy namespace the model code and `to_device` use
def asarray(a, dtype=None):
    if isinstance(a, ndarray):
        return ndarray(a._a.astype(dtype or a.dtype, copy=False))
    return ndarray(np.array(a, dtype=dtype))  # a copy, as a host-to-device transfer


def ascontiguousarray(a, dtype=None):
    return ndarray(np.ascontiguousarray(_host(a), dtype=dtype))


def zeros(shape, dtype=float):
    return ndarray(np.zeros(shape, dtype=dtype))


def empty(shape, dtype=float):
    return ndarray(np.empty(shape, dtype=dtype))


def repeat(a, repeats, axis=None):
    return ndarray(np.repeat(a._a, repeats, axis=axis))


def take(a, indices, axis=None, out=None):
    np.take(a._a, _host(indices), axis=axis, out=None if out is None else out._a)
    return out


def take_along_axis(a, indices, axis):
    return ndarray(np.take_along_axis(a._a, indices._a, axis=axis))


def tanh(x):
    return ndarray(np.tanh(x._a))


int32, float16, float32 = np.int32, np.float16, np.float32


class _Stream:
    def __init__(self, non_blocking=False):
        self.synchronized = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        self.synchronized += 1


class _Pool:
    def free_all_blocks(self):
        pass

    def free_bytes(self):
        return 0


class _Device(contextlib.nullcontext):
    compute_capability = "80"  # a test may lower it (monkeypatch) to see the bfloat16 fallback

    def __init__(self, index=0):
        super().__init__()


cuda = types.SimpleNamespace(
    Device=_Device,
    Stream=_Stream,
    get_current_stream=lambda: _Stream(),
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, deviceSynchronize=lambda: None),
)
_pool = _Pool()
get_default_memory_pool = get_default_pinned_memory_pool = lambda: _pool


def _unwrapped(fn):
    def call(*args):
        return fn(*[_host(a) for a in args])

    return call


def _bf16_values(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _bf16_linear(x, w, bias, act, residual, out, n_threads=1):
    """The arithmetic the CUDA bf16 linear runs (x and w in bf16, sums in float32), in numpy."""
    out[...] = reference.bf16_linear(x, _bf16_values(w), bias, act, residual)


def _embedding_bf16(ids, table, scale, out, n_threads=1):
    out[...] = reference.embedding(ids, _bf16_values(table), scale)


def kernels_module() -> types.ModuleType:
    """`backends.cuda.ops`' interface over the CPU kernels (the reference where they are missing);
    the bfloat16 kernels are their numpy reference."""
    module = types.ModuleType("aiotranslate.backends.cuda.ops")
    families = {"_softmax": ["softmax"], "_norms": ["layer_norm", "rms_norm"], "_gemm": ["linear", "batched_matmul"],
                "_activations": ["bias_activation", "swiglu"], "_positions": ["rotary", "embedding"],
                "_select": ["argmax", "topk"]}  # fmt: skip
    for family, names in families.items():
        native = _native.load(family)
        if native is None:
            raise RuntimeError(f"the fake CUDA kernels need the CPU extension ({family})")
        for name in names:
            setattr(module, name, _unwrapped(getattr(native, name)))
    module.bf16_linear, module.embedding_bf16 = _unwrapped(_bf16_linear), _unwrapped(_embedding_bf16)
    return module

