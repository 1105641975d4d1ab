"""Whole models on a GPU: a model moved with `to_device` decodes what the same model decodes on the
CPU, and the engines run with device="cuda" (several workers, one or two worker sets on GPU 0).

Skipped without cupy or a CUDA device. Models are tiny random Marian, GPT-2 and Llama checkpoints
(`random_checkpoints`: no torch needed). float32: identical greedy tokens; float16: at least 90% of
the tokens equal position by position (half-precision rounding may flip a near-tie, after which a
sequence can drift). Engines use the thread API (`submit_*`): no event loop is needed here.
"""

from __future__ import annotations

import numpy as np
import pytest
from gpu_support import cupy, requires_gpu
from random_checkpoints import BUILDERS, MAX_LENGTH, PROMPTS, SOURCES, agreement, bert, greedy

from aiotranslate import Encoder, Generator, Translator
from aiotranslate.backends import is_cuda_array
from aiotranslate.models import load_model
from aiotranslate.models.device import to_device

pytestmark = requires_gpu
BF16_GPU = cupy is not None and int(cupy.cuda.Device(0).compute_capability) >= 80
needs_bf16 = pytest.mark.skipif(not BF16_GPU, reason="bfloat16 GEMMs need compute capability 8.0")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("random-checkpoints")
    return {name: build(root / name) for name, build in {**BUILDERS, "bert": bert}.items()}


@pytest.mark.parametrize(
    "dtype, bar", [("float32", 1.0), ("float16", 0.9), pytest.param("bfloat16", 0.9, marks=needs_bf16)]
)
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_greedy_tokens_on_the_gpu_equal_the_cpu(checkpoints, name, dtype, bar):
    """float32: every token; float16 and bfloat16: at least 90% of them."""
    host = load_model(checkpoints[name])
    want = greedy(host, name)
    with cupy.cuda.Device(0):
        got = greedy(to_device(host, 0, dtype), name)
    assert agreement(got, want) >= bar, (got, want)


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


@needs_bf16
def test_bfloat16_twin_halves_the_weights_and_shares_the_tied_table(checkpoints):
    host = load_model(checkpoints["gpt2"])  # LM head tied to the token table
    twin = to_device(host, 0, "bfloat16")
    assert twin.embedding.bits.dtype == np.uint16 and twin.lm_head.weight is twin.embedding.bits
    down = twin.layers[0].ffn.down
    assert down.weight.dtype == np.uint16 and down.weight.nbytes * 2 == host.layers[0].ffn.down.weight.nbytes
    assert down.bias.dtype == np.float32 and twin.final_norm.gamma.dtype == np.float32
    assert twin.positions.table.dtype == np.float32


# engine, its thread-API method, inputs, options, the result field compared
ENGINES = {
    "marian": (Translator, "submit_translate_batch", SOURCES, {"max_decoding_length": MAX_LENGTH}, "hypotheses"),
    "llama": (Generator, "submit_generate_batch", PROMPTS, {"max_length": MAX_LENGTH}, "sequences_ids"),
}


@pytest.mark.parametrize("device_index", [[0], [0, 0]])
@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engines_on_cuda_match_the_cpu(checkpoints, name, device_index):
    """Default options (the Translator's: beam 2); single-example calls spread over the workers."""
    engine_class, submit, inputs, options, field = ENGINES[name]
    with engine_class(checkpoints[name], intra_threads=1) as cpu:
        want = [getattr(r, field) for r in getattr(cpu, submit)(inputs, **options).result()]
    gpu = engine_class(checkpoints[name], device="cuda", device_index=device_index, inter_threads=2, intra_threads=1)
    with gpu:
        assert gpu.device == "cuda" and gpu.statistics()["num_workers"] == 2 * len(device_index)
        futures = [getattr(gpu, submit)([x], **options) for x in inputs * 4]
        got = [getattr(f.result()[0], field) for f in futures]
    assert got == want * 4


def test_cached_static_prompt_on_cuda_matches_the_cpu(checkpoints):
    """The static prompt's state kept on the device (cache_static_prompt) and copied into each
    batch decodes what the CPU decodes reading it every time."""
    options = {"max_length": MAX_LENGTH, "static_prompt": [1, 9, 8, 7, 6], "include_prompt_in_result": False}
    with Generator(checkpoints["llama"], intra_threads=1) as cpu:
        read = cpu.submit_generate_batch(PROMPTS, cache_static_prompt=False, **options).result()
    want = [r.sequences_ids for r in read]
    with Generator(checkpoints["llama"], device="cuda", intra_threads=1) as gpu:
        for _ in range(2):
            assert [r.sequences_ids for r in gpu.submit_generate_batch(PROMPTS, **options).result()] == want
        assert len(gpu._static_prompts._entries) == 1


@pytest.mark.parametrize(
    "compute_type, tolerance",
    [("float32", 1e-4), ("float16", 2e-2), pytest.param("bfloat16", 5e-2, marks=needs_bf16)],
)
def test_encoder_on_cuda_matches_the_cpu(checkpoints, compute_type, tolerance):
    inputs = [[2, 5, 6, 7, 3], [2, 9, 3]]
    with Encoder(checkpoints["bert"], intra_threads=1) as cpu:
        want = cpu.submit_forward_batch(inputs).result()
    with Encoder(checkpoints["bert"], device="cuda", compute_type=compute_type, intra_threads=1) as gpu:
        got = gpu.submit_forward_batch(inputs).result()
    for name in ("last_hidden_state", "pooler_output"):
        a, b = getattr(got, name), getattr(want, name)
        assert isinstance(a, np.ndarray) and a.dtype == np.float32  # handed over on the host
        np.testing.assert_allclose(a, b, atol=tolerance * np.abs(b).max(), err_msg=name)


@needs_bf16
@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engines_run_bfloat16_on_cuda(checkpoints, name):
    """compute_type="bfloat16" is bfloat16 on this GPU (no silent float32), two workers agree with
    the CPU's float32 on 90% of the tokens."""
    engine_class, submit, inputs, options, field = ENGINES[name]
    with engine_class(checkpoints[name], intra_threads=1) as cpu:
        want = [getattr(r, field)[0] for r in getattr(cpu, submit)(inputs, **options).result()]
    with engine_class(checkpoints[name], device="cuda", compute_type="bfloat16", inter_threads=2, intra_threads=1) as gpu:
        assert gpu.compute_type == "bfloat16"
        futures = [getattr(gpu, submit)([x], **options) for x in inputs]
        got = [getattr(f.result()[0], field)[0] for f in futures]
    assert agreement(got, want) >= 0.9, (got, want)


def test_auto_picks_the_gpu_and_close_frees_the_weights(checkpoints):
    translator = Translator(checkpoints["marian"], device="auto", intra_threads=1)
    assert translator.device == "cuda" and translator._loaded.replicas
    translator.submit_translate_batch(SOURCES[:1], max_decoding_length=4).result()
    translator.close()
    assert translator._loaded.replicas == {}
    with cupy.cuda.Device(0):
        assert cupy.get_default_memory_pool().free_bytes() == 0  # cached blocks went back to the driver


def test_unload_frees_the_gpu_copies_and_load_copies_them_back(checkpoints):
    with Translator(checkpoints["marian"], device="cuda", intra_threads=1) as translator:
        want = translator.submit_translate_batch(SOURCES, max_decoding_length=8).result()
        for to_cpu in (False, True):
            translator.unload_model(to_cpu=to_cpu)
            assert not translator.model_is_loaded
            with cupy.cuda.Device(0):
                assert cupy.get_default_memory_pool().free_bytes() == 0
            translator.load_model()
            got = translator.submit_translate_batch(SOURCES, max_decoding_length=8).result()
            assert [r.hypotheses for r in got] == [r.hypotheses for r in want]


def test_device_index_past_the_gpus_is_refused(checkpoints):
    with pytest.raises(ValueError, match="device_index"):
        Translator(checkpoints["marian"], device="cuda", device_index=[0, cupy.cuda.runtime.getDeviceCount()])

