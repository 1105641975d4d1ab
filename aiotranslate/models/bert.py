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
  pretraining head (`cls.*`, `lm_head.*`, DistilBERT's `vocab_*`), which is not used.
DistilBERT's `sinusoidal_pos_embds` table is stored in its checkpoint like a learned one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..convert import Checkpoint, HFConfig
from ..layers import Embedding, FeedForward, LayerNorm, Linear, PositionEmbedding, SelfAttention
from .encoder import Embeddings, EncoderLayer, TransformerEncoder

# Weights of pretraining heads (masked LM, next sentence) and buffers an encoder does not use.
HEAD_PATTERNS = ("cls.*", "lm_head.*", "vocab_transform.*", "vocab_layer_norm.*", "vocab_projector.*", "*position_ids")
PREFIXES = {"bert": "bert.", "roberta": "roberta.", "xlm-roberta": "roberta.", "distilbert": "distilbert."}
DEFAULTS = {"hidden_act": "gelu", "layer_norm_eps": 1e-12, "position_embedding_type": "absolute", "pad_token_id": 0}


class EncoderModel:
    def __init__(self, encoder: TransformerEncoder, pooler: Linear | None = None, config: HFConfig | None = None):
        self.encoder, self.pooler, self.config = encoder, pooler, config

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.encoder.embeddings.tokens.vocab_size

    @property
    def max_positions(self) -> int | None:
        return self.encoder.embeddings.max_positions

    def forward(self, ids, lengths=None, token_type_ids=None, n_threads: int = 1):
        """ids int (B, S) right-padded, lengths (B,) (None: all S), token_type_ids (B, S) or None
        (all 0) -> last hidden states (B, S, C), zero past each length, and the pooled (B, C) or None."""
        hidden = self.encoder(ids, lengths, token_type_ids, n_threads=n_threads)
        if self.pooler is None:
            return hidden, None
        first = np.ascontiguousarray(hidden[:, 0])  # (B, C)
        return hidden, np.tanh(self.pooler(first, n_threads=n_threads))  # (B, C): too small for a kernel


def load(directory: Path, config: HFConfig) -> EncoderModel:
    model_type = config.model_type
    if model_type not in PREFIXES:
        raise config.error(f"model_type {model_type!r} is not one of {sorted(PREFIXES)}")
    ckpt = Checkpoint(directory)
    prefix = PREFIXES[model_type] if any(n.startswith(PREFIXES[model_type]) for n in ckpt.tensors) else ""
    load_parts = _distilbert if model_type == "distilbert" else _bert
    try:
        embeddings, layers = load_parts(ckpt, prefix, config)
    except ValueError as e:  # an unknown activation
        raise config.error(str(e)) from e
    c = embeddings.tokens.dim
    pooler = None
    if f"{prefix}pooler.dense.weight" in ckpt:
        pooler = Linear(ckpt.get(f"{prefix}pooler.dense.weight", (c, c)), ckpt.get(f"{prefix}pooler.dense.bias", (c,)))
    model = EncoderModel(TransformerEncoder(embeddings, layers), pooler, config)
    ckpt.check_all_read(ignore=HEAD_PATTERNS)
    return model


def _bert(ckpt: Checkpoint, p: str, config: HFConfig) -> tuple[Embeddings, list[EncoderLayer]]:
    """BERT, RoBERTa and XLM-RoBERTa names and keys."""
    cfg = config.with_defaults(DEFAULTS)
    c, n_heads, width = (
        cfg.positive("hidden_size"),
        cfg.positive("num_attention_heads"),
        cfg.positive("intermediate_size"),
    )
    eps, act = cfg.get("layer_norm_eps", float), cfg.get("hidden_act", str)
    if cfg.get("position_embedding_type", str) != "absolute":
        raise cfg.error(f"position_embedding_type {cfg.get('position_embedding_type', str)!r} is not supported")
    if c % n_heads:
        raise cfg.error(f"hidden_size={c} is not a multiple of num_attention_heads={n_heads}")

    def linear(name: str, n_out: int, n_in: int) -> Linear:
        return Linear(ckpt.get(f"{p}{name}.weight", (n_out, n_in)), ckpt.get(f"{p}{name}.bias", (n_out,)))

    def norm(name: str) -> LayerNorm:
        return LayerNorm(ckpt.get(f"{p}{name}.weight", (c,)), ckpt.get(f"{p}{name}.bias", (c,)), eps)

    # RoBERTa-style models number positions from padding_idx + 1.
    first_position = 0 if config.model_type == "bert" else cfg.get("pad_token_id", int) + 1
    n_positions = cfg.positive("max_position_embeddings")
    n_types = cfg.get("type_vocab_size", int, 2)
    embeddings = Embeddings(
        Embedding(ckpt.get(f"{p}embeddings.word_embeddings.weight", (cfg.positive("vocab_size"), c))),
        PositionEmbedding(ckpt.get(f"{p}embeddings.position_embeddings.weight", (n_positions, c)), first_position),
        Embedding(ckpt.get(f"{p}embeddings.token_type_embeddings.weight", (n_types, c))) if n_types else None,
        norm("embeddings.LayerNorm"),
    )
    layers = []
    for i in range(cfg.positive("num_hidden_layers")):
        name = f"encoder.layer.{i}"
        qkv = Linear.fuse([linear(f"{name}.attention.self.{x}", c, c) for x in ("query", "key", "value")])
        attention = SelfAttention(
            qkv,
            linear(f"{name}.attention.output.dense", c, c),
            n_heads=n_heads,
            n_kv_heads=n_heads,
            head_dim=c // n_heads,
            causal=False,
        )
        ffn = FeedForward(linear(f"{name}.intermediate.dense", width, c), linear(f"{name}.output.dense", c, width), act)
        norm1, norm2 = norm(f"{name}.attention.output.LayerNorm"), norm(f"{name}.output.LayerNorm")
        layers.append(EncoderLayer(attention, norm1, ffn, norm2, pre_norm=False))
    return embeddings, layers


def _distilbert(ckpt: Checkpoint, p: str, config: HFConfig) -> tuple[Embeddings, list[EncoderLayer]]:
    cfg = config.with_defaults({"activation": "gelu"})
    c, n_heads, width = cfg.positive("dim"), cfg.positive("n_heads"), cfg.positive("hidden_dim")
    eps = 1e-12  # fixed in transformers' DistilBERT, not a config key
    if c % n_heads:
        raise cfg.error(f"dim={c} is not a multiple of n_heads={n_heads}")

    def linear(name: str, n_out: int, n_in: int) -> Linear:
        return Linear(ckpt.get(f"{p}{name}.weight", (n_out, n_in)), ckpt.get(f"{p}{name}.bias", (n_out,)))

    def norm(name: str) -> LayerNorm:
        return LayerNorm(ckpt.get(f"{p}{name}.weight", (c,)), ckpt.get(f"{p}{name}.bias", (c,)), eps)

    embeddings = Embeddings(
        Embedding(ckpt.get(f"{p}embeddings.word_embeddings.weight", (cfg.positive("vocab_size"), c))),
        PositionEmbedding(
            ckpt.get(f"{p}embeddings.position_embeddings.weight", (cfg.positive("max_position_embeddings"), c))
        ),
        norm=norm("embeddings.LayerNorm"),
    )
    layers = []
    for i in range(cfg.positive("n_layers")):
        name = f"transformer.layer.{i}"
        qkv = Linear.fuse([linear(f"{name}.attention.{x}_lin", c, c) for x in "qkv"])
        attention = SelfAttention(
            qkv,
            linear(f"{name}.attention.out_lin", c, c),
            n_heads=n_heads,
            n_kv_heads=n_heads,
            head_dim=c // n_heads,
            causal=False,
        )
        ffn = FeedForward(
            linear(f"{name}.ffn.lin1", width, c), linear(f"{name}.ffn.lin2", c, width), cfg.get("activation", str)
        )
        layers.append(
            EncoderLayer(
                attention, norm(f"{name}.sa_layer_norm"), ffn, norm(f"{name}.output_layer_norm"), pre_norm=False
            )
        )
    return embeddings, layers
