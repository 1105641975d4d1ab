"""`aiotranslate.backends` on a machine without a GPU: array detection and cupy staying optional."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from aiotranslate.backends import get_array_module, is_cuda_array

# Stand-ins for cupy.ndarray: detection reads the type's name and module, never imports cupy.
FakeCupyArray = type("ndarray", (), {"__module__": "cupy"})
FakeCupySubclass = type("Parameter", (FakeCupyArray,), {"__module__": "somelib.nn"})


def test_cupy_arrays_are_recognised_by_type():
    assert is_cuda_array(FakeCupyArray())
    assert is_cuda_array(FakeCupySubclass())


def test_other_arrays_are_not_cuda_arrays():
    for x in (np.zeros(3), np.float32(1.0), [1.0], None, type("ndarray", (), {})()):
        assert not is_cuda_array(x)


def test_numpy_arrays_use_numpy():
    assert get_array_module(np.zeros(3)) is np


def test_aiotranslate_imports_without_cupy(without_cupy):
    for name in ("aiotranslate", "aiotranslate.ops.reference", "aiotranslate.backends"):
        importlib.import_module(name)


def test_cuda_backend_without_cupy_says_what_to_install(without_cupy):
    with pytest.raises(ImportError, match=r"aiotranslate\[gpu\].*cupy-cuda12x or cupy-cuda13x"):
        importlib.import_module("aiotranslate.backends.cuda")
