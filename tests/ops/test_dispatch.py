"""Which kernels an op runs is taken from its input's type: numpy arrays go to the native kernels
(or the numpy reference when they are missing), cupy arrays to `backends.cuda.ops`, which is only
imported for them. Stand-in arrays and modules make this checkable without a GPU."""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest

from aiotranslate import ops
from aiotranslate.ops import _dispatch, reference

softmax_module = importlib.import_module("aiotranslate.ops.softmax")  # the module, not the op

# A stand-in for cupy.ndarray: detection reads the type's name and module, never imports cupy.
FakeCupyArray = type("ndarray", (), {"__module__": "cupy"})


class Spy:
    """A kernel module that records its calls and runs the real kernel (or the reference)."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def softmax(self, x, out, *args):
        self.calls.append(x.shape)
        if self.real is None:
            out[...] = reference.softmax(x)
        else:
            self.real.softmax(x, out, *args)


# The calls below pass `out`, which takes the checked path (the short way calls the kernels directly).


def test_numpy_inputs_run_the_native_kernels(monkeypatch):
    spy = Spy(softmax_module._kernels)
    monkeypatch.setattr(softmax_module, "_kernels", spy)
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(ops.softmax(x, out=np.empty_like(x)), reference.softmax(x), rtol=1e-5)
    assert spy.calls == [(3, 5)]


def test_numpy_inputs_fall_back_to_the_reference_without_the_extension(monkeypatch):
    monkeypatch.setattr(softmax_module, "_kernels", None)
    x = np.random.default_rng(1).standard_normal((4, 7))
    y = ops.softmax(x, scale=0.5, out=np.empty_like(x))
    np.testing.assert_allclose(y, reference.softmax(x, 0.5), rtol=1e-12)
    assert _dispatch.kernels(x, None) is None


def test_cupy_inputs_pick_the_cuda_kernels(monkeypatch):
    cuda_ops = types.ModuleType("aiotranslate.backends.cuda.ops")
    cuda = types.ModuleType("aiotranslate.backends.cuda")
    cuda.ops = cuda_ops
    monkeypatch.setitem(sys.modules, "aiotranslate.backends.cuda", cuda)
    monkeypatch.setitem(sys.modules, "aiotranslate.backends.cuda.ops", cuda_ops)
    assert _dispatch.kernels(FakeCupyArray(), softmax_module._kernels) is cuda_ops
    assert _dispatch.kernels(np.zeros(2), softmax_module._kernels) is softmax_module._kernels


def test_a_cupy_array_without_cupy_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.delitem(sys.modules, "aiotranslate.backends.cuda", raising=False)
    monkeypatch.delitem(sys.modules, "aiotranslate.backends.cuda.ops", raising=False)
    with pytest.raises(ImportError, match=r"aiotranslate\[gpu\]"):
        _dispatch.kernels(FakeCupyArray(), None)


@pytest.mark.parametrize("bad", [[1.0, 2.0], (1.0,), 3.0, None])
def test_non_arrays_are_refused_with_a_type_error(bad):
    with pytest.raises(TypeError, match="numpy or cupy array"):
        ops.softmax(bad)
