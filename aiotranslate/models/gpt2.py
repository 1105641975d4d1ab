"""GPT-2 (`model_type: gpt2`): the weight names and config keys of transformers' GPT2LMHeadModel,
mapped onto `DecoderOnlyModel`.

Facts: learned absolute positions (n_positions), pre-norm LayerNorm blocks, a fused QKV projection,
`activation_function` (gelu_new by default), attention scaled by 1/sqrt(D) when `scale_attn_weights`
and by 1/(layer + 1) more when `scale_attn_by_inverse_layer_idx`, LM head tied to the token embeddings
unless `tie_word_embeddings` is false. Weights are stored as Conv1D, i.e. (in, out): they are
transposed once at load into Linear's (out, in), so these are owned copies, not file views.
Checkpoints name tensors with or without the `transformer.` prefix; older ones carry the causal
mask buffers `attn.bias` / `attn.masked_bias`, which are ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..convert import Checkpoint, GenerationConfig, HFConfig
from ..layers import Embedding, FeedForward, LayerNorm, Linear, PositionEmbedding, SelfAttention
from .decoder_only import DecoderLayer, DecoderOnlyModel

DEFAULTS = {
    "layer_norm_epsilon": 1e-5,
    "activation_function": "gelu_new",
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "tie_word_embeddings": True,
    "add_cross_attention": False,
}


def load(directory: Path, config: HFConfig) -> DecoderOnlyModel:
    cfg = config.with_defaults(DEFAULTS)
    c, n_layers, n_heads = cfg.positive("n_embd"), cfg.positive("n_layer"), cfg.positive("n_head")
    vocab, n_positions = cfg.positive("vocab_size"), cfg.positive("n_positions")
    inner = cfg.positive("n_inner", None) or 4 * c
    eps = cfg.get("layer_norm_epsilon", float)
    act = cfg.get("activation_function", str)
    if c % n_heads:
        raise cfg.error(f"n_embd={c} is not a multiple of n_head={n_heads}")
    if cfg.get("add_cross_attention", bool):
        raise cfg.error("GPT-2 with add_cross_attention is not supported")
    d = c // n_heads

    ckpt = Checkpoint(directory)
    p = "transformer." if "transformer.wte.weight" in ckpt else ""

    def conv1d(name: str, n_in: int, n_out: int) -> Linear:
        weight = np.ascontiguousarray(ckpt.get(f"{name}.weight", (n_in, n_out)).T)  # (in, out) -> (out, in)
        return Linear(weight, ckpt.get(f"{name}.bias", (n_out,)))

    def layer_norm(name: str) -> LayerNorm:
        return LayerNorm(ckpt.get(f"{name}.weight", (c,)), ckpt.get(f"{name}.bias", (c,)), eps)

    try:
        layers = []
        for i in range(n_layers):
            scale = 1.0
            if cfg.get("scale_attn_weights", bool):
                scale = d**-0.5
            if cfg.get("scale_attn_by_inverse_layer_idx", bool):
                scale /= i + 1
            attention = SelfAttention(
                conv1d(f"{p}h.{i}.attn.c_attn", c, 3 * c),
                conv1d(f"{p}h.{i}.attn.c_proj", c, c),
                n_heads=n_heads,
                n_kv_heads=n_heads,
                head_dim=d,
                scale=scale,
            )
            ffn = FeedForward(conv1d(f"{p}h.{i}.mlp.c_fc", c, inner), conv1d(f"{p}h.{i}.mlp.c_proj", inner, c), act)
            layers.append(DecoderLayer(layer_norm(f"{p}h.{i}.ln_1"), attention, layer_norm(f"{p}h.{i}.ln_2"), ffn))
    except ValueError as e:  # an unknown activation_function
        raise cfg.error(str(e)) from e

    embedding = Embedding(ckpt.get(f"{p}wte.weight", (vocab, c)))
    tied = cfg.get("tie_word_embeddings", bool)
    model = DecoderOnlyModel(
        embedding=embedding,
        positions=PositionEmbedding(ckpt.get(f"{p}wpe.weight", (n_positions, c))),
        layers=layers,
        final_norm=layer_norm(f"{p}ln_f"),
        lm_head=Linear(embedding.table if tied else ckpt.get("lm_head.weight", (vocab, c))),
        config=config,
        generation_config=GenerationConfig.read(directory, config),
    )
    ckpt.check_all_read(ignore=("*.attn.bias", "*.attn.masked_bias", "lm_head.weight"))
    return model
