"""Device selection on a machine without cupy (cupy is hidden when the machine has it): "auto" is
the CPU, "cuda" names the package to install, no GPU is counted, and the CUDA compute types fall
back as CTranslate2's do on a GPU without int8 or bfloat16 (compute capability before 8.0)."""

from __future__ import annotations

import importlib

import pytest
from random_checkpoints import marian


def test_no_gpu_is_counted_without_cupy(without_cupy):
    aiotranslate = importlib.import_module("aiotranslate")
    assert aiotranslate.get_cuda_device_count() == 0


def test_auto_and_cpu_resolve_to_the_cpu(without_cupy):
    devices = importlib.import_module("aiotranslate.backends.devices")
    assert devices.resolve_device("auto") == ("cpu", (0,))
    assert devices.resolve_device("cpu", [0, 1]) == ("cpu", (0,))  # device_index means GPUs only


def test_cuda_without_cupy_names_the_package(without_cupy, tmp_path):
    aiotranslate = importlib.import_module("aiotranslate")
    path = marian(tmp_path / "marian")
    with pytest.raises(ImportError, match=r"pip install 'aiotranslate\[gpu\]'"):
        aiotranslate.Translator(path, device="cuda")
    with pytest.raises(ImportError, match=r"aiotranslate\[gpu\]"):
        aiotranslate.get_supported_compute_types("cuda")


def test_bad_device_arguments_are_refused_before_loading():
    from aiotranslate.backends.devices import resolve_device

    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("gpu")
    for bad in ([], "0", [0, "1"], True, [1.0]):
        with pytest.raises(ValueError, match="device_index"):
            resolve_device("cpu", bad)


def test_cpu_engine_reports_its_device(tmp_path):
    from aiotranslate import Translator

    with Translator(marian(tmp_path / "marian"), device="auto", intra_threads=1, inter_threads=2) as t:
        if t.device == "cpu":  # on a GPU machine "auto" rightly picks the GPU
            assert t.num_translators == 2 and t.compute_type == "float32"
            assert t.submit_translate_batch([[5, 6, 0]], max_decoding_length=3).result()[0].hypotheses


@pytest.mark.parametrize(
    "requested, before_ampere, from_ampere",
    [
        ("float32", "float32", "float32"),
        ("float", "float32", "float32"),
        ("float16", "float16", "float16"),
        ("auto", "float16", "float16"),
        ("default", "float32", "float32"),
        ("int8", "float16", "float16"),
        ("int16", "float16", "float16"),
        ("int8_float16", "float16", "float16"),
        ("int8_float32", "float32", "float32"),
        ("bfloat16", "float32", "bfloat16"),
        ("int8_bfloat16", "float32", "bfloat16"),
        ({"cuda": "float16", "cpu": "int8"}, "float16", "float16"),
    ],
)
def test_cuda_compute_types_resolve_to_what_the_gpu_kernels_run(monkeypatch, requested, before_ampere, from_ampere):
    """bfloat16 needs compute capability 8.0 (checked on every listed GPU); before it, float32."""
    from aiotranslate.api import compute_type

    capabilities = {0: 75, 1: 80, 2: 90}
    monkeypatch.setattr(compute_type, "resolve_device", lambda device, index=0: ("cuda", tuple(index)))
    monkeypatch.setattr(compute_type, "cuda_compute_capability", capabilities.__getitem__)
    assert compute_type.resolve(requested, "cuda", device_index=[0]) == before_ampere
    assert compute_type.resolve(requested, "cuda", device_index=[1, 0]) == before_ampere  # one old GPU
    assert compute_type.resolve(requested, "cuda", device_index=[1, 2]) == from_ampere
    monkeypatch.setattr(compute_type, "resolve_device", lambda device, index=0: ("cuda", (index,)))
    assert compute_type.get_supported_compute_types("cuda", 0) == {"float32", "float16"}
    assert compute_type.get_supported_compute_types("cuda", 2) == {"float32", "float16", "bfloat16"}


def test_models_without_device_support_say_so():
    from aiotranslate.models.device import to_device

    with pytest.raises(ValueError, match="CPU only"):
        to_device(object(), 0)
