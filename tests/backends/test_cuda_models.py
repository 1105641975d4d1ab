"""Whole models on a GPU: a model moved with `to_device` decodes what the same model decodes on the
CPU, and the engines run with device="cuda" (several workers, one or two worker sets on GPU 0).

Skipped without cupy or a CUDA device. Models are tiny random Marian, GPT-2 and Llama checkpoints
(`random_checkpoints`: no torch needed). float32: identical greedy tokens; float16: at least 90% of
the tokens equal position by position (half-precision rounding may flip a near-tie, after which a
sequence can drift). Engines use the thread API (`submit_*`): no event loop is needed here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from random_checkpoints import BUILDERS

from aiotranslate import Generator, Translator
from aiotranslate.backends import is_cuda_array
from aiotranslate.decoding import DecodingOptions, decode
from aiotranslate.decoding.search import pad
from aiotranslate.models import load_model
from aiotranslate.models.device import to_device

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cupy's import-time notes about CUDA paths
        import cupy

    HAVE_GPU, WHY_NOT = cupy.cuda.runtime.getDeviceCount() > 0, "no CUDA device"
except Exception as e:  # ImportError, or CUDARuntimeError without a driver or a device
    HAVE_GPU, WHY_NOT = False, f"{type(e).__name__}: {e}"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not HAVE_GPU, reason=f"needs cupy and a CUDA GPU ({WHY_NOT})"),
]

SOURCES = [[5, 6, 7, 8, 0], [9, 10, 0], [11, 12, 13, 14, 15, 16, 17, 0]]  # Marian: eos 0
PROMPTS = [[1, 5, 6], [1, 7], [1, 8, 9, 10, 11, 12]]  # GPT-2, Llama: bos 1, eos 2
END_IDS = {"marian": (0,), "gpt2": (2,), "llama": (2,)}
MAX_LENGTH = 24


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("random-checkpoints")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def greedy(model, name: str) -> list[list[int]]:
    options = DecodingOptions(max_length=MAX_LENGTH, end_ids=END_IDS[name])
    if name == "marian":
        ids, lengths = pad(SOURCES)
        state = model.encode(ids, lengths)
        start = [[model.decoder_start_token_id]] * len(SOURCES)
    else:
        state = model.new_state(len(PROMPTS))
        start = PROMPTS
    return [result.hypotheses[0] for result in decode(model, state, start, options)]


def agreement(got: list[list[int]], want: list[list[int]]) -> float:
    """Fraction of positions (over the longer of each pair) holding the same token."""
    same = sum(a == b for g, w in zip(got, want) for a, b in zip(g, w))
    return same / sum(max(len(g), len(w)) for g, w in zip(got, want))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_float32_greedy_tokens_equal_the_cpu(checkpoints, name):
    host = load_model(checkpoints[name])
    want = greedy(host, name)
    with cupy.cuda.Device(0):
        got = greedy(to_device(host, 0, "float32"), name)
    assert got == want


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_float16_greedy_tokens_mostly_equal_the_cpu(checkpoints, name):
    host = load_model(checkpoints[name])
    want = greedy(host, name)
    with cupy.cuda.Device(0):
        got = greedy(to_device(host, 0, "float16"), name)
    assert agreement(got, want) >= 0.9, (got, want)


def test_device_twin_leaves_the_host_model_and_keeps_shared_tables_shared(checkpoints):
    host = load_model(checkpoints["gpt2"])  # LM head tied to the token table
    twin = to_device(host, 0, "float16")
    assert isinstance(host.embedding.table, np.ndarray) and host.embedding.table.dtype == np.float32
    assert is_cuda_array(twin.embedding.table) and twin.embedding.table.dtype == np.float16
    assert twin.lm_head.weight is twin.embedding.table  # one device copy of the tied table
    llama = to_device(load_model(checkpoints["llama"]), 0, "float16")
    rotary = llama.layers[0].attention.rotary
    assert rotary is llama.layers[1].attention.rotary  # still one Rotary for every layer
    assert all(is_cuda_array(t) and t.dtype == np.float32 for t in rotary._tables)


@pytest.mark.parametrize("device_index", [[0], [0, 0]])
def test_translator_on_cuda_matches_the_cpu(checkpoints, device_index):
    """Default options (beam 2); 12 single-example calls spread over the workers at once."""
    path = checkpoints["marian"]
    with Translator(path, intra_threads=1) as cpu:
        want = [r.hypotheses for r in cpu.submit_translate_batch(SOURCES, max_decoding_length=MAX_LENGTH).result()]
    with Translator(path, device="cuda", device_index=device_index, inter_threads=2, intra_threads=1) as gpu:
        assert gpu.device == "cuda" and gpu.num_translators == 2 * len(device_index)
        futures = [gpu.submit_translate_batch([s], max_decoding_length=MAX_LENGTH) for s in SOURCES * 4]
        got = [f.result()[0].hypotheses for f in futures]
    assert got == want * 4


@pytest.mark.parametrize("device_index", [[0], [0, 0]])
def test_generator_on_cuda_matches_the_cpu(checkpoints, device_index):
    path = checkpoints["llama"]
    with Generator(path, intra_threads=1) as cpu:
        want = [r.sequences_ids for r in cpu.submit_generate_batch(PROMPTS, max_length=MAX_LENGTH).result()]
    with Generator(path, device="cuda", device_index=device_index, inter_threads=2, intra_threads=1) as gpu:
        assert gpu.device == "cuda" and gpu.num_generators == 2 * len(device_index)
        futures = [gpu.submit_generate_batch([p], max_length=MAX_LENGTH) for p in PROMPTS * 4]
        got = [f.result()[0].sequences_ids for f in futures]
    assert got == want * 4


def test_auto_picks_the_gpu_and_close_frees_the_weights(checkpoints):
    translator = Translator(checkpoints["marian"], device="auto", intra_threads=1)
    assert translator.device == "cuda" and translator._loaded.replicas
    translator.submit_translate_batch(SOURCES[:1], max_decoding_length=4).result()
    translator.close()
    assert translator._loaded.replicas == {}
    with cupy.cuda.Device(0):
        assert cupy.get_default_memory_pool().free_bytes() == 0  # cached blocks went back to the driver


def test_device_index_past_the_gpus_is_refused(checkpoints):
    with pytest.raises(ValueError, match="device_index"):
        Translator(checkpoints["marian"], device="cuda", device_index=[0, cupy.cuda.runtime.getDeviceCount()])

