"""Random-weight checkpoints written with numpy and safetensors alone, in the Hugging Face layout the
loaders read (config.json + model.safetensors). No torch or transformers: the GPU machine has
neither, and the GPU tests and `benchmarks/gpu_check.py` build their models here.

    marian(dir, ...)   Marian / OPUS-MT: post-norm, sinusoidal positions, swish, one shared table
    gpt2(dir, ...)     GPT-2: learned positions, gelu_new, Conv1D weights stored (in, out)
    llama(dir, ...)    Llama: RMSNorm, rotary, SwiGLU, grouped-query attention, untied head
    bert(dir, ...)     BERT: post-norm encoder, learned positions and token types, pooler

Weights are N(0, 1/fan_in) (norms near 1, biases small), so activations stay O(1) through the
layers and the logits are spread: greedy decoding has no near-ties for float32 to break differently.
Defaults are tiny; the benchmark passes the OPUS-MT shape. `greedy(model, name)` decodes the
parity inputs of the decoders (`SOURCES` for Marian, `PROMPTS` for GPT-2 and Llama).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from aiotranslate.decoding import DecodingOptions, decode
from aiotranslate.decoding.search import pad


class _Weights:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, np.ndarray] = {}

    def matrix(self, name: str, n_out: int, n_in: int, *, stored_in_out: bool = False) -> None:
        w = self.rng.standard_normal((n_out, n_in), dtype=np.float32) / np.float32(np.sqrt(n_in))
        self.tensors[name] = np.ascontiguousarray(w.T) if stored_in_out else w

    def linear(self, name: str, n_out: int, n_in: int, *, bias: bool = True, stored_in_out: bool = False) -> None:
        self.matrix(f"{name}.weight", n_out, n_in, stored_in_out=stored_in_out)
        if bias:
            self.vector(f"{name}.bias", n_out, 0.0)

    def vector(self, name: str, n: int, mean: float, std: float = 0.1) -> None:
        self.tensors[name] = (mean + std * self.rng.standard_normal(n)).astype(np.float32)

    def norm(self, name: str, n: int, *, bias: bool = True) -> None:
        self.vector(f"{name}.weight", n, 1.0)
        if bias:
            self.vector(f"{name}.bias", n, 0.0)

    def table(self, name: str, rows: int, dim: int) -> None:
        self.tensors[name] = self.rng.standard_normal((rows, dim), dtype=np.float32) * np.float32(0.5)

    def save(self, directory: Path, config: dict) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(config, indent=1))
        save_file(self.tensors, str(directory / "model.safetensors"))
        return directory


def marian(directory, *, d_model=32, layers=2, heads=4, ffn=64, vocab=67, max_positions=64, seed=0) -> Path:
    """eos 0, pad = decoder start = vocab - 1, as OPUS-MT."""
    w = _Weights(seed)
    w.table("model.shared.weight", vocab, d_model)
    w.tensors["final_logits_bias"] = np.zeros((1, vocab), dtype=np.float32)
    for side in ("encoder", "decoder"):
        for i in range(layers):
            p = f"model.{side}.layers.{i}"
            blocks = ("self_attn", "encoder_attn") if side == "decoder" else ("self_attn",)
            for block in blocks:
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    w.linear(f"{p}.{block}.{proj}", d_model, d_model)
                w.norm(f"{p}.{block}_layer_norm", d_model)
            w.linear(f"{p}.fc1", ffn, d_model)
            w.linear(f"{p}.fc2", d_model, ffn)
            w.norm(f"{p}.final_layer_norm", d_model)
    config = dict(
        model_type="marian", vocab_size=vocab, decoder_vocab_size=vocab, d_model=d_model,
        encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_position_embeddings=max_positions, activation_function="swish", scale_embedding=True,
        share_encoder_decoder_embeddings=True, tie_word_embeddings=True, pad_token_id=vocab - 1,
        eos_token_id=0, decoder_start_token_id=vocab - 1, forced_eos_token_id=0,
    )  # fmt: skip
    return w.save(directory, config)


def gpt2(directory, *, d_model=24, layers=2, heads=3, vocab=61, max_positions=64, seed=0) -> Path:
    """bos 1, eos 2; the LM head is tied to the token table."""
    w = _Weights(seed)
    w.table("wte.weight", vocab, d_model)
    w.table("wpe.weight", max_positions, d_model)
    for i in range(layers):
        p = f"h.{i}"
        w.norm(f"{p}.ln_1", d_model)
        w.linear(f"{p}.attn.c_attn", 3 * d_model, d_model, stored_in_out=True)
        w.linear(f"{p}.attn.c_proj", d_model, d_model, stored_in_out=True)
        w.norm(f"{p}.ln_2", d_model)
        w.linear(f"{p}.mlp.c_fc", 4 * d_model, d_model, stored_in_out=True)
        w.linear(f"{p}.mlp.c_proj", d_model, 4 * d_model, stored_in_out=True)
    w.norm("ln_f", d_model)
    config = dict(
        model_type="gpt2", n_embd=d_model, n_layer=layers, n_head=heads, vocab_size=vocab,
        n_positions=max_positions, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return w.save(directory, config)


def llama(directory, *, d_model=24, layers=2, heads=6, kv_heads=2, ffn=40, vocab=61, max_positions=64, seed=0):
    """bos 1, eos 2; head_dim = d_model / heads; separate LM head."""
    w = _Weights(seed)
    d = d_model // heads
    w.table("model.embed_tokens.weight", vocab, d_model)
    for i in range(layers):
        p = f"model.layers.{i}"
        w.linear(f"{p}.self_attn.q_proj", heads * d, d_model, bias=False)
        w.linear(f"{p}.self_attn.k_proj", kv_heads * d, d_model, bias=False)
        w.linear(f"{p}.self_attn.v_proj", kv_heads * d, d_model, bias=False)
        w.linear(f"{p}.self_attn.o_proj", d_model, heads * d, bias=False)
        w.linear(f"{p}.mlp.gate_proj", ffn, d_model, bias=False)
        w.linear(f"{p}.mlp.up_proj", ffn, d_model, bias=False)
        w.linear(f"{p}.mlp.down_proj", d_model, ffn, bias=False)
        w.norm(f"{p}.input_layernorm", d_model, bias=False)
        w.norm(f"{p}.post_attention_layernorm", d_model, bias=False)
    w.norm("model.norm", d_model, bias=False)
    w.linear("lm_head", vocab, d_model, bias=False)
    config = dict(
        model_type="llama", hidden_size=d_model, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
        max_position_embeddings=max_positions, rope_theta=10000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return w.save(directory, config)


def bert(directory, *, d_model=24, layers=2, heads=3, ffn=48, vocab=61, max_positions=64, seed=0) -> Path:
    w = _Weights(seed)
    for name, rows in (("word", vocab), ("position", max_positions), ("token_type", 2)):
        w.table(f"bert.embeddings.{name}_embeddings.weight", rows, d_model)
    w.norm("bert.embeddings.LayerNorm", d_model)
    for i in range(layers):
        p = f"bert.encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            w.linear(f"{p}.attention.self.{proj}", d_model, d_model)
        w.linear(f"{p}.attention.output.dense", d_model, d_model)
        w.norm(f"{p}.attention.output.LayerNorm", d_model)
        w.linear(f"{p}.intermediate.dense", ffn, d_model)
        w.linear(f"{p}.output.dense", d_model, ffn)
        w.norm(f"{p}.output.LayerNorm", d_model)
    w.linear("bert.pooler.dense", d_model, d_model)
    config = dict(
        model_type="bert", hidden_size=d_model, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ffn, vocab_size=vocab, max_position_embeddings=max_positions, type_vocab_size=2,
    )  # fmt: skip
    return w.save(directory, config)


BUILDERS = {"marian": marian, "gpt2": gpt2, "llama": llama}  # the decoders of the parity tests

SOURCES = [[5, 6, 7, 8, 0], [9, 10, 0], [11, 12, 13, 14, 15, 16, 17, 0]]  # Marian: eos 0
PROMPTS = [[1, 5, 6], [1, 7], [1, 8, 9, 10, 11, 12]]  # GPT-2, Llama: bos 1, eos 2
END_IDS = {"marian": (0,), "gpt2": (2,), "llama": (2,)}
MAX_LENGTH = 24


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

