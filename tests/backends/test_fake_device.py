"""The device-side paths of the shared model code, run here without a GPU: `fake_cupy` stands in
for cupy (arrays that refuse numpy, kernels that are the CPU ones), so a model moved with
`to_device` must decode exactly what the host model decodes, through the same engines, and any
place that hands a device array to numpy fails. The real GPU run is tests/backends/test_cuda_*.py."""

from __future__ import annotations

import sys
import types

import fake_cupy
import numpy as np
import pytest
from random_checkpoints import BUILDERS, MAX_LENGTH, PROMPTS, SOURCES, agreement, bert, greedy

from aiotranslate import _native
from aiotranslate.backends import is_cuda_array

pytestmark = pytest.mark.skipif(_native.load("_gemm") is None, reason="the fake device runs the CPU extension")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("random-checkpoints")
    return {name: build(root / name) for name, build in {**BUILDERS, "bert": bert}.items()}


@pytest.fixture
def fake_gpu(monkeypatch):
    """`import cupy` gives fake_cupy, and the CUDA kernels are the CPU ones on its arrays."""
    kernels = fake_cupy.kernels_module()
    package = types.ModuleType("aiotranslate.backends.cuda")
    package.ops = kernels
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setitem(sys.modules, "aiotranslate.backends.cuda", package)
    monkeypatch.setitem(sys.modules, "aiotranslate.backends.cuda.ops", kernels)


def test_the_fake_refuses_numpy_like_cupy(fake_gpu):
    x = fake_cupy.zeros((2, 3), dtype=np.float32)
    with pytest.raises(TypeError):
        np.asarray(x)
    with pytest.raises(TypeError):
        x[np.array([0, 1])]
    with pytest.raises(TypeError):
        x + np.ones((2, 3), dtype=np.float32)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_device_model_decodes_what_the_host_model_decodes(fake_gpu, checkpoints, name):
    from aiotranslate.models import load_model
    from aiotranslate.models.device import to_device

    host = load_model(checkpoints[name])
    twin = to_device(host, 0, "float32")
    layers = twin.decoder_layers if name == "marian" else twin.layers
    assert all(is_cuda_array(layer.ffn.down.weight) for layer in layers)
    assert greedy(twin, name) == greedy(host, name)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_bfloat16_device_model_agrees_with_the_host_model(fake_gpu, checkpoints, name):
    """Every linear and embedding becomes a bf16 twin (uint16 bits, half the bytes; a tied table
    stays one copy), the rest stays float32, and greedy decoding through the unchanged model code
    (the fake's bf16 kernels are the numpy reference) keeps 90% of the float32 tokens."""
    from aiotranslate.models import load_model
    from aiotranslate.models.device import to_device
    from aiotranslate.models.device_bf16 import BF16DeviceEmbedding, BF16DeviceLinear

    host = load_model(checkpoints[name])
    twin = to_device(host, 0, "bfloat16")
    layers = twin.decoder_layers if name == "marian" else twin.layers
    hosts = host.decoder_layers if name == "marian" else host.layers
    for layer, host_layer in zip(layers, hosts):
        down = layer.ffn.down
        assert isinstance(down, BF16DeviceLinear) and is_cuda_array(down.weight) and down.weight.dtype == np.uint16
        assert 2 * down.weight.size * down.weight.itemsize == host_layer.ffn.down.weight.nbytes
    embedding = twin.decoder_embeddings.tokens if name == "marian" else twin.embedding
    assert isinstance(embedding, BF16DeviceEmbedding) and embedding.table.dtype == np.float32
    if name in ("marian", "gpt2"):  # output projection tied to the token table
        assert twin.lm_head.weight is embedding.bits
    norm = layers[0].norm1 if name == "marian" else twin.final_norm
    assert is_cuda_array(norm.gamma) and norm.gamma.dtype == np.float32
    assert agreement(greedy(twin, name), greedy(host, name)) >= 0.9


def test_bfloat16_on_a_gpu_before_ampere_falls_back_or_says_so(fake_gpu, checkpoints, monkeypatch):
    """compute_type="bfloat16" runs float32 there (CTranslate2's fallback); asking to_device for
    bf16 weights on such a GPU is a clear error, never float32 in disguise."""
    import aiotranslate
    from aiotranslate.models import load_model
    from aiotranslate.models.device import to_device
    from aiotranslate.models.device_bf16 import BF16DeviceLinear

    with aiotranslate.Generator(checkpoints["llama"], device="cuda", compute_type="bfloat16", intra_threads=1) as g:
        assert g.compute_type == "bfloat16"
        assert isinstance(g._loaded.replicas[0].lm_head, BF16DeviceLinear)
        got = g.submit_generate_batch(PROMPTS, max_length=MAX_LENGTH).result()
    with aiotranslate.Generator(checkpoints["llama"], intra_threads=1) as cpu:
        want = cpu.submit_generate_batch(PROMPTS, max_length=MAX_LENGTH).result()
    assert agreement([r.sequences_ids[0] for r in got], [r.sequences_ids[0] for r in want]) >= 0.9
    monkeypatch.setattr(fake_cupy._Device, "compute_capability", "75")
    with aiotranslate.Generator(checkpoints["llama"], device="cuda", compute_type="bfloat16", intra_threads=1) as g:
        assert g.compute_type == "float32"
    with pytest.raises(ValueError, match=r"compute capability 7\.5\) has no bfloat16"):
        to_device(load_model(checkpoints["llama"]), 0, "bfloat16")


# engine, its thread-API method, inputs, options, the result field compared
ENGINES = {
    "marian": ("Translator", "submit_translate_batch", SOURCES, {"max_decoding_length": MAX_LENGTH}, "hypotheses"),
    "llama": ("Generator", "submit_generate_batch", PROMPTS, {"max_length": MAX_LENGTH}, "sequences_ids"),
}


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engines_on_the_device_match_the_cpu(fake_gpu, checkpoints, name):
    """Two worker sets of 2 workers on "GPU 0": the Translator's default beam search reads host
    logits, the Generator's greedy search picks tokens (and their scores) on the device."""
    import aiotranslate

    class_name, submit, inputs, options, field = ENGINES[name]
    engine_class = getattr(aiotranslate, class_name)
    options = {**options, "return_scores": True}
    with engine_class(checkpoints[name], intra_threads=1) as cpu:
        want = getattr(cpu, submit)(inputs, **options).result()
    with engine_class(checkpoints[name], device="cuda", device_index=[0, 0], inter_threads=2, intra_threads=1) as gpu:
        assert gpu.device == "cuda" and gpu.statistics()["num_workers"] == 4
        futures = [getattr(gpu, submit)([x], **options) for x in inputs]
        got = [f.result()[0] for f in futures]
    assert [getattr(r, field) for r in got] == [getattr(r, field) for r in want]
    np.testing.assert_allclose([r.scores for r in got], [r.scores for r in want], rtol=1e-5)


def test_greedy_bans_run_on_the_device(fake_gpu, checkpoints, monkeypatch, tmp_path):
    """Greedy search whose only processors are bans (the model's bad_words_ids, as OPUS-MT bans its
    pad token at every step; end tokens below the minimum length) leaves the logits on the device and
    decodes what the host decodes."""
    import json
    import shutil

    import aiotranslate
    import aiotranslate.decoding.greedy as greedy_search

    banned = tmp_path / "marian"
    shutil.copytree(checkpoints["marian"], banned)
    config = banned / "generation_config.json"
    values = json.loads(config.read_text()) if config.exists() else {}
    config.write_text(json.dumps({**values, "bad_words_ids": [[3], [4]]}))
    options = dict(beam_size=1, max_decoding_length=MAX_LENGTH, min_decoding_length=4, return_scores=True)
    with aiotranslate.Translator(banned, intra_threads=1) as cpu:
        want = cpu.submit_translate_batch(SOURCES, **options).result()
    copied = []
    host_float32 = greedy_search.host_float32
    monkeypatch.setattr(greedy_search, "host_float32", lambda a: copied.append(a) or host_float32(a))
    with aiotranslate.Translator(banned, device="cuda", intra_threads=1) as gpu:
        got = gpu.submit_translate_batch(SOURCES, **options).result()
    assert not copied
    assert [r.hypotheses for r in got] == [r.hypotheses for r in want]
    assert all(3 not in h and 4 not in h for r in got for h in r.hypotheses)
    np.testing.assert_allclose([r.scores for r in got], [r.scores for r in want], rtol=1e-5)


def test_encoder_on_the_device_hands_back_host_arrays(fake_gpu, checkpoints):
    from aiotranslate import Encoder

    inputs = [[2, 5, 6, 7, 3], [2, 9, 3]]
    with Encoder(checkpoints["bert"], intra_threads=1) as cpu:
        want = cpu.submit_forward_batch(inputs).result()
    with Encoder(checkpoints["bert"], device="cuda", intra_threads=1) as gpu:
        got = gpu.submit_forward_batch(inputs).result()
    # The host runs packed weights (other kernels than the device's plain ones): equal to rounding.
    np.testing.assert_allclose(got.last_hidden_state, want.last_hidden_state, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.pooler_output, want.pooler_output, rtol=1e-5, atol=1e-6)


def test_unload_and_load_on_the_device(fake_gpu, checkpoints):
    from aiotranslate import Translator

    with Translator(checkpoints["marian"], device="cuda", intra_threads=1) as translator:
        want = translator.submit_translate_batch(SOURCES, max_decoding_length=8).result()
        translator.unload_model(to_cpu=True)
        assert translator._cpu_copy.replicas == {}
        translator.load_model()
        assert translator.submit_translate_batch(SOURCES, max_decoding_length=8).result() == want


def test_ops_refuse_to_mix_host_and_device_arrays(fake_gpu):
    from aiotranslate import ops

    host = np.zeros((2, 4), dtype=np.float32)
    device = fake_cupy.asarray(host)
    with pytest.raises(TypeError, match="w is a numpy"):
        ops.linear(device, np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="out is a numpy"):
        ops.softmax(device, out=np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="mask is a cupy"):
        ops.softmax(host, mask=device)
    with pytest.raises(TypeError, match="lengths is a cupy"):
        ops.softmax(host, lengths=fake_cupy.asarray(np.array([4, 4], dtype=np.int32)))
    assert is_cuda_array(ops.softmax(device, lengths=[4, 2]))  # host lengths move to the device


def test_attention_on_the_device_runs_its_three_ops_there(fake_gpu):
    """ops.attention has no CUDA kernel of its own: device arrays go through batched_matmul, softmax
    and batched_matmul on the device, which compute what the fused host kernel computes."""
    from aiotranslate import ops

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for shape in ((4, 3, 16), (4, 9, 16), (4, 9, 16)))
    kwargs = {"scale": 0.25, "lengths": [9, 5], "causal_q": 3}
    got = ops.attention(fake_cupy.asarray(q), fake_cupy.asarray(k), fake_cupy.asarray(v), **kwargs)
    assert is_cuda_array(got)
    np.testing.assert_array_equal(got.get(), ops.attention(q, k, v, **kwargs))
