"""The BART family of encoder-decoders as transformers stores them: Marian/OPUS-MT (`marian`), BART
(`bart`), mBART (`mbart`), M2M100 and NLLB (`m2m_100`), mapped onto `EncoderDecoderModel`.

They share weight names (`model.{encoder,decoder}.layers.N.{self_attn,encoder_attn}.{q,k,v,out}_proj`,
`fc1`, `fc2`, `*_layer_norm`) and differ in a few facts, one row of `FAMILIES` each:
- norm placement: post-norm (Marian, BART) or pre-norm with a final `layer_norm` (mBART, M2M100);
  `layernorm_embedding` after the embeddings (BART, mBART);
- positions: learned with offset 2 (BART, mBART: position p is row p + 2); Marian's fixed sinusoidal
  table (angle p / 10000^(2i/C), sin half then cos half, row p); M2M100's fairseq table (angle
  p * exp(-i * ln(10000) / (C/2 - 1)), numbered from padding_idx + 1 as transformers numbers non-pad
  tokens), neither stored in the checkpoint;
- token embeddings times sqrt(d_model) when `scale_embedding`; a `final_logits_bias` (not M2M100);
- one token table for encoder, decoder and output while `tie_word_embeddings` (the default); three
  separate ones otherwise; Marian may also give the decoder its own vocabulary
  (`share_encoder_decoder_embeddings` false, `decoder_vocab_size`), the output then tied to it.
Decoding starts from `decoder_start_token_id` (Marian: pad; mBART without one: bos, as transformers
falls back); multilingual models force a language code first (`forced_bos_token_id`), both read from
generation_config.json, then config.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import ops
from ..convert import Checkpoint, GenerationConfig, HFConfig
from ..layers import CrossAttention, Embedding, FeedForward, LayerNorm, Linear, PositionEmbedding, SelfAttention
from .encoder import Embeddings, EncoderLayer, TransformerEncoder
from .seq2seq import DecoderLayer, EncoderDecoderModel


@dataclass(frozen=True)
class Family:
    pre_norm: bool
    embedding_norm: bool  # layernorm_embedding after the embeddings
    final_norm: bool  # encoder.layer_norm / decoder.layer_norm after the last layer
    positions: str  # "learned" | "marian" | "fairseq"
    logits_bias: bool  # final_logits_bias
    defaults: dict  # transformers' config defaults for keys checkpoints may leave out


FAMILIES = {
    "marian": Family(False, False, False, "marian", True, {"scale_embedding": False, "activation_function": "gelu"}),
    "bart": Family(False, True, False, "learned", True, {"scale_embedding": False, "activation_function": "gelu"}),
    "mbart": Family(True, True, True, "learned", True, {"scale_embedding": False, "activation_function": "gelu"}),
    "m2m_100": Family(True, False, True, "fairseq", False, {"scale_embedding": True, "activation_function": "relu"}),
}
COMMON_DEFAULTS = {"pad_token_id": 1, "tie_word_embeddings": True, "share_encoder_decoder_embeddings": True}
LEARNED_OFFSET = 2  # BART's learned tables keep two leading rows (a fairseq legacy)


def load(directory: Path, config: HFConfig) -> EncoderDecoderModel:
    family = FAMILIES.get(config.model_type)
    if family is None:
        raise config.error(f"model_type {config.model_type!r} is not one of {sorted(FAMILIES)}")
    cfg = config.with_defaults({**COMMON_DEFAULTS, **family.defaults})
    c = cfg.positive("d_model")
    vocab = cfg.positive("vocab_size")
    # Marian may give the decoder its own vocabulary; the other families have one.
    shared = config.model_type != "marian" or cfg.get("share_encoder_decoder_embeddings", bool)
    target_vocab = vocab if shared else cfg.positive("decoder_vocab_size", vocab)
    max_positions = cfg.positive("max_position_embeddings")
    pad = cfg.get("pad_token_id", int)
    activation = cfg.get("activation_function", str)
    scale = math.sqrt(c) if cfg.get("scale_embedding", bool) else 1.0
    if c % 2:
        raise cfg.error(f"d_model={c} must be even")

    ckpt = Checkpoint(directory)
    p = "model." if any(n.startswith("model.") for n in ckpt.tensors) else ""

    def linear(name: str, n_out: int, n_in: int) -> Linear:
        return Linear(ckpt.get(f"{name}.weight", (n_out, n_in)), ckpt.get(f"{name}.bias", (n_out,)))

    def norm(name: str) -> LayerNorm:
        return LayerNorm(ckpt.get(f"{name}.weight", (c,)), ckpt.get(f"{name}.bias", (c,)), 1e-5)

    def heads(side: str) -> tuple[int, int]:
        n = cfg.positive(f"{side}_attention_heads")
        if c % n:
            raise cfg.error(f"d_model={c} is not a multiple of {side}_attention_heads={n}")
        return n, c // n

    def ffn(name: str, width: int) -> FeedForward:
        return FeedForward(linear(f"{name}.fc1", width, c), linear(f"{name}.fc2", c, width), activation)

    def self_attention(name: str, side: str, causal: bool) -> SelfAttention:
        n, d = heads(side)
        qkv = Linear.fuse([linear(f"{name}.{x}_proj", c, c) for x in "qkv"])
        return SelfAttention(qkv, linear(f"{name}.out_proj", c, c), n_heads=n, n_kv_heads=n, head_dim=d, causal=causal)

    def cross_attention(name: str) -> CrossAttention:
        n, d = heads("decoder")
        kv = Linear.fuse([linear(f"{name}.{x}_proj", c, c) for x in "kv"])
        q, out = linear(f"{name}.q_proj", c, c), linear(f"{name}.out_proj", c, c)
        return CrossAttention(q, kv, out, n_heads=n, n_kv_heads=n, head_dim=d)

    def positions(side: str) -> PositionEmbedding:
        name = f"{p}{side}.embed_positions.weight"
        if family.positions == "learned":
            return PositionEmbedding(ckpt.get(name, (max_positions + LEARNED_OFFSET, c)), offset=LEARNED_OFFSET)
        if family.positions == "marian":
            # Older conversions stored the fixed table; it equals the computed one.
            stored = ckpt.get_optional(name, (max_positions, c))
            return PositionEmbedding(ops.sinusoidal_table(max_positions, c) if stored is None else stored)
        inc = math.log(10000.0) / (c // 2 - 1)
        return PositionEmbedding(ops.sinusoidal_table(max_positions, c, log_timescale_increment=inc, offset=pad + 1))

    def embeddings(side: str, table: np.ndarray) -> Embeddings:
        norm_emb = norm(f"{p}{side}.layernorm_embedding") if family.embedding_norm else None
        return Embeddings(Embedding(table, scale), positions(side), norm=norm_emb)

    # Token tables. transformers ties only when `tie_word_embeddings`: then encoder, decoder and
    # output share one table, stored under any of its names (Marian with separate vocabularies ties
    # only the output to the decoder table); otherwise each is its own tensor and `shared` is unused.
    names = ("shared", "encoder.embed_tokens", "decoder.embed_tokens")
    shared_name, encoder_name, decoder_name = (f"{p}{n}.weight" for n in names)
    tied = cfg.get("tie_word_embeddings", bool)
    one_table = tied and shared
    if one_table:
        present = [n for n in (shared_name, encoder_name, decoder_name) if n in ckpt]
        if not present:
            raise cfg.error(f"no token embeddings in the checkpoint (looked for {shared_name})")
        encoder_table = decoder_table = ckpt.get(present[0], (vocab, c))
    else:
        encoder_table = ckpt.get(encoder_name, (vocab, c))
        decoder_table = ckpt.get(decoder_name, (target_vocab, c))
    output_table = decoder_table if tied else ckpt.get("lm_head.weight", (target_vocab, c))
    logits_bias = ckpt.get_optional("final_logits_bias", (1, target_vocab)) if family.logits_bias else None
    if logits_bias is None:
        logits_bias = np.zeros(target_vocab, dtype=np.float32)

    try:
        encoder_layers = [
            EncoderLayer(
                self_attention(f"{p}encoder.layers.{i}.self_attn", "encoder", causal=False),
                norm(f"{p}encoder.layers.{i}.self_attn_layer_norm"),
                ffn(f"{p}encoder.layers.{i}", cfg.positive("encoder_ffn_dim")),
                norm(f"{p}encoder.layers.{i}.final_layer_norm"),
                pre_norm=family.pre_norm,
            )
            for i in range(cfg.positive("encoder_layers"))
        ]
        decoder_layers = [
            DecoderLayer(
                self_attention(f"{p}decoder.layers.{i}.self_attn", "decoder", causal=True),
                norm(f"{p}decoder.layers.{i}.self_attn_layer_norm"),
                cross_attention(f"{p}decoder.layers.{i}.encoder_attn"),
                norm(f"{p}decoder.layers.{i}.encoder_attn_layer_norm"),
                ffn(f"{p}decoder.layers.{i}", cfg.positive("decoder_ffn_dim")),
                norm(f"{p}decoder.layers.{i}.final_layer_norm"),
                pre_norm=family.pre_norm,
            )
            for i in range(cfg.positive("decoder_layers"))
        ]
    except ValueError as e:  # an unknown activation_function
        raise cfg.error(str(e)) from e

    generation = GenerationConfig.read(directory, config)
    start = generation.decoder_start_token_id
    if start is None:
        start = pad if config.model_type == "marian" else generation.bos_token_id
    if start is None or not 0 <= start < target_vocab:
        raise cfg.error(f"decoder start token {start!r} is missing or outside the target vocabulary")
    forced_bos = generation.forced_bos_token_id
    if forced_bos is None:
        forced_bos = cfg.get("forced_bos_token_id", int, None)

    model = EncoderDecoderModel(
        encoder=TransformerEncoder(
            embeddings("encoder", encoder_table),
            encoder_layers,
            norm(f"{p}encoder.layer_norm") if family.final_norm else None,
        ),
        decoder_embeddings=embeddings("decoder", decoder_table),
        decoder_layers=decoder_layers,
        decoder_final_norm=norm(f"{p}decoder.layer_norm") if family.final_norm else None,
        lm_head=Linear(output_table, np.ascontiguousarray(logits_bias.reshape(-1))),
        decoder_start_token_id=start,
        forced_bos_token_id=forced_bos,
        config=config,
        generation_config=generation,
    )
    # Copies of a tied table under its other names, and an unused `shared`, are not weights to refuse.
    duplicates = (encoder_name, decoder_name) if one_table else ()
    ckpt.check_all_read(ignore=(shared_name, *duplicates, *(("lm_head.weight",) if tied else ())))
    return model
