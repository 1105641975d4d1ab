"""Encoder-only models (BERT, RoBERTa, XLM-RoBERTa, DistilBERT) as transformers stores them, mapped
onto `TransformerEncoder`, plus BERT's pooler: `EncoderModel.forward(ids, lengths, token_type_ids)
-> (last_hidden (B, S, C), pooled (B, C) or None)`.

Facts:
- embeddings: words + learned absolute positions (+ token types, not DistilBERT), then LayerNorm
  (`layer_norm_eps`; DistilBERT 1e-12); post-norm layers with a `hidden_act` feed-forward;
- RoBERTa / XLM-RoBERTa number positions from padding_idx + 1 (transformers counts non-pad tokens
  from there), so their tables hold max_length + padding_idx + 1 rows; BERT numbers from 0;
- pooler (when stored): tanh(dense(hidden state of the first token, [CLS] / <s>));
- checkpoints come bare (`BertModel`) or under a prefix (`bert.`, `roberta.`, `distilbert.`) with a
  pretraining head (`cls.*`, `lm_head.*`, DistilBERT's `vocab_*`), which is not used; old ones
  name LayerNorm parameters `gamma` / `beta` (transformers renames them on load).
DistilBERT's `sinusoidal_pos_embds` table is stored in its checkpoint like a learned one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends import get_array_module
from ..convert import Checkpoint, HFConfig
from ..layers import Embedding, FeedForward, LayerNorm, Linear, PositionEmbedding, SelfAttention
from .encoder import Embeddings, EncoderLayer, TransformerEncoder

# Weights of pretraining heads (masked LM, next sentence) and buffers an encoder does not use.
HEAD_PATTERNS = ("cls.*", "lm_head.*", "vocab_transform.*", "vocab_layer_norm.*", "vocab_projector.*", "*position_ids")


@dataclass(frozen=True)
class Naming:
    """Where one model type keeps its sizes (config keys) and weights (tensor names, {i} the layer)."""

    prefix: str
    width: str  # config keys of C, heads, FFN width, layers, activation
    heads: str
    ffn: str
    layers: str
    activation: str
    layer: str  # tensor names inside layer {i}
    qkv: tuple[str, str, str]
    out: str
    norm1: str
    up: str
    down: str
    norm2: str


_BERT = dict(
    width="hidden_size", heads="num_attention_heads", ffn="intermediate_size", layers="num_hidden_layers",
    activation="hidden_act", layer="encoder.layer.{i}",
    qkv=("attention.self.query", "attention.self.key", "attention.self.value"), out="attention.output.dense",
    norm1="attention.output.LayerNorm", up="intermediate.dense", down="output.dense", norm2="output.LayerNorm",
)  # fmt: skip
NAMING = {
    "bert": Naming(prefix="bert.", **_BERT),
    "roberta": Naming(prefix="roberta.", **_BERT),
    "xlm-roberta": Naming(prefix="roberta.", **_BERT),
    "distilbert": Naming(
        prefix="distilbert.", width="dim", heads="n_heads", ffn="hidden_dim", layers="n_layers",
        activation="activation", layer="transformer.layer.{i}",
        qkv=("attention.q_lin", "attention.k_lin", "attention.v_lin"), out="attention.out_lin",
        norm1="sa_layer_norm", up="ffn.lin1", down="ffn.lin2", norm2="output_layer_norm",
    ),
}  # fmt: skip
DEFAULTS = {
    "hidden_act": "gelu",
    "activation": "gelu",
    "layer_norm_eps": 1e-12,
    "position_embedding_type": "absolute",
    "pad_token_id": 0,
    "type_vocab_size": 2,
}


class EncoderModel:
    def __init__(self, encoder: TransformerEncoder, pooler: Linear | None = None, config: HFConfig | None = None):
        self.encoder, self.pooler, self.config = encoder, pooler, config

    @property
    def vocab_size(self) -> int:
        return self.encoder.embeddings.tokens.vocab_size

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size

    @property
    def max_positions(self) -> int | None:
        return self.encoder.embeddings.max_positions

    def forward(self, ids, lengths=None, token_type_ids=None, n_threads: int = 1):
        """ids int (B, S) right-padded, lengths (B,) (None: all S), token_type_ids (B, S) or None
        (all 0) -> last hidden states (B, S, C), zero past each length, and the pooled (B, C) or None."""
        hidden = self.encoder(ids, lengths, token_type_ids, n_threads=n_threads)
        if self.pooler is None:
            return hidden, None
        xp = get_array_module(hidden)
        first = xp.ascontiguousarray(hidden[:, 0])  # (B, C)
        return hidden, xp.tanh(self.pooler(first, n_threads=n_threads))  # (B, C): too small for a kernel


def load(directory: Path, config: HFConfig) -> EncoderModel:
    naming = NAMING.get(config.model_type)
    if naming is None:
        raise config.error(f"model_type {config.model_type!r} is not one of {sorted(NAMING)}")
    cfg = config.with_defaults(DEFAULTS)
    c, n_heads, width = cfg.positive(naming.width), cfg.positive(naming.heads), cfg.positive(naming.ffn)
    if c % n_heads:
        raise cfg.error(f"{naming.width}={c} is not a multiple of {naming.heads}={n_heads}")
    if cfg.get("position_embedding_type", str) != "absolute":
        raise cfg.error(f"position_embedding_type {cfg.get('position_embedding_type', str)!r} is not supported")
    distilbert = config.model_type == "distilbert"
    eps = 1e-12 if distilbert else cfg.get("layer_norm_eps", float)  # DistilBERT: fixed, not a config key

    ckpt = Checkpoint(directory)
    p = naming.prefix if any(n.startswith(naming.prefix) for n in ckpt.tensors) else ""

    def linear(name: str, n_out: int, n_in: int) -> Linear:
        return Linear(ckpt.get(f"{p}{name}.weight", (n_out, n_in)), ckpt.get(f"{p}{name}.bias", (n_out,)))

    def norm(name: str) -> LayerNorm:
        legacy = f"{p}{name}.gamma" in ckpt
        weight, bias = ("gamma", "beta") if legacy else ("weight", "bias")
        return LayerNorm(ckpt.get(f"{p}{name}.{weight}", (c,)), ckpt.get(f"{p}{name}.{bias}", (c,)), eps)

    def table(name: str, rows: int) -> np.ndarray:
        return ckpt.get(f"{p}embeddings.{name}.weight", (rows, c))

    # RoBERTa-style models number positions from padding_idx + 1.
    first_position = cfg.get("pad_token_id", int) + 1 if config.model_type in ("roberta", "xlm-roberta") else 0
    n_types = 0 if distilbert else cfg.get("type_vocab_size", int)
    embeddings = Embeddings(
        Embedding(table("word_embeddings", cfg.positive("vocab_size"))),
        PositionEmbedding(table("position_embeddings", cfg.positive("max_position_embeddings")), first_position),
        Embedding(table("token_type_embeddings", n_types)) if n_types else None,
        norm("embeddings.LayerNorm"),
    )
    try:
        layers = []
        for i in range(cfg.positive(naming.layers)):
            name = naming.layer.format(i=i)
            qkv = Linear.fuse([linear(f"{name}.{x}", c, c) for x in naming.qkv])
            out = linear(f"{name}.{naming.out}", c, c)
            attention = SelfAttention(
                qkv, out, n_heads=n_heads, n_kv_heads=n_heads, head_dim=c // n_heads, causal=False
            )
            up, down = linear(f"{name}.{naming.up}", width, c), linear(f"{name}.{naming.down}", c, width)
            ffn = FeedForward(up, down, cfg.get(naming.activation, str))
            norm1, norm2 = norm(f"{name}.{naming.norm1}"), norm(f"{name}.{naming.norm2}")
            layers.append(EncoderLayer(attention, norm1, ffn, norm2, pre_norm=False))
    except ValueError as e:  # an unknown activation
        raise cfg.error(str(e)) from e

    pooler = linear("pooler.dense", c, c) if f"{p}pooler.dense.weight" in ckpt else None
    model = EncoderModel(TransformerEncoder(embeddings, layers), pooler, config)
    ckpt.check_all_read(ignore=HEAD_PATTERNS)
    return model
