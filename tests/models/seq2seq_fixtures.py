"""Tiny random-weight transformers encoder-decoders saved to a temp dir, and their reference
outputs computed by transformers itself (no downloads).

Sizes are odd on purpose: 3 heads of dim 6, a vocabulary of 53 (not a multiple of 8), 2 layers.
Weights are redrawn with unit-scale statistics (transformers' 0.02 init makes every logit nearly
zero, which would hide most bugs).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)

VOCAB, D_MODEL, HEADS, FFN, LAYERS, MAX_POSITIONS = 53, 18, 3, 22, 2, 20

SEQ2SEQ_KINDS = ("marian", "marian_untied", "bart", "mbart", "m2m100", "nllb")


def seq2seq_config(kind: str, **overrides):
    """The transformers config of a tiny model of `kind`; `overrides` are config fields."""
    from transformers import BartConfig, M2M100Config, MarianConfig, MBartConfig

    common = dict(
        vocab_size=VOCAB,
        d_model=D_MODEL,
        encoder_layers=LAYERS,
        decoder_layers=LAYERS,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=FFN,
        decoder_ffn_dim=FFN,
        max_position_embeddings=MAX_POSITIONS,
    )
    if kind == "marian":  # OPUS-MT: eos 0, pad last and decoding starts from it, swish, scaled embeddings
        config = MarianConfig(
            **common,
            pad_token_id=VOCAB - 1,
            decoder_start_token_id=VOCAB - 1,
            eos_token_id=0,
            activation_function="swish",
            scale_embedding=True,
        )
    elif kind == "marian_untied":  # separate encoder / decoder / output embeddings, smaller target vocab
        config = MarianConfig(
            **common,
            decoder_vocab_size=VOCAB - 6,
            share_encoder_decoder_embeddings=False,
            tie_word_embeddings=False,
            pad_token_id=VOCAB - 7,
            decoder_start_token_id=VOCAB - 7,
            eos_token_id=0,
            scale_embedding=True,
        )
    elif kind == "bart":
        config = BartConfig(**common)
    elif kind == "mbart":  # pre-norm, learned positions; generation starts from eos
        config = MBartConfig(**common, scale_embedding=True, decoder_start_token_id=2)
    elif kind == "m2m100":
        config = M2M100Config(**common, activation_function="gelu", scale_embedding=False)
    elif kind == "nllb":  # NLLB-200 dense checkpoints are M2M100 models with these settings
        config = M2M100Config(**common, activation_function="relu", scale_embedding=True)
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {SEQ2SEQ_KINDS}")
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Redraw every trainable weight: matrices N(0, 1/fan_in), norm gains around 1, biases and
    `final_logits_bias` around 0. Frozen tables (Marian's sinusoidal positions) are left alone."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.copy_(noise / math.sqrt(p.shape[-1]))
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.2 * noise)
        for name, b in model.named_buffers():
            if name.endswith("final_logits_bias"):
                b.copy_(0.5 * torch.randn(b.shape, generator=g))


# The target-language token multilingual models force as the first generated token (transformers 5
# keeps it in generation_config.json only).
FORCED_BOS = {"mbart": VOCAB - 3, "m2m100": VOCAB - 2, "nllb": VOCAB - 4}


def build_seq2seq(kind: str, root: Path, seed: int = 0, **overrides) -> Path:
    """Save a tiny random `kind` model (config.json, generation_config.json, model.safetensors)."""
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(seq2seq_config(kind, **overrides)).eval()
    randomize(model, seed)
    if kind in FORCED_BOS:
        model.generation_config.forced_bos_token_id = FORCED_BOS[kind]
    model.save_pretrained(root, safe_serialization=True)
    return root


def load_hf(root: Path):
    """The saved model reloaded by transformers (so it sees exactly the files we load), with eager
    attention, the implementation that can return attention weights."""
    from transformers import AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM.from_pretrained(root, attn_implementation="eager").eval()


def random_ids(rng: np.random.Generator, length: int, vocab: int, avoid: tuple[int, ...] = ()) -> np.ndarray:
    """int32 (length,) ids in [0, vocab) without the ids in `avoid` (pad, which would change
    M2M100's positions, and eos)."""
    allowed = np.setdiff1d(np.arange(vocab), np.asarray(avoid, dtype=np.int64))
    return rng.choice(allowed, size=length).astype(np.int32)


@torch.no_grad()
def hf_encoder_output(model, src: np.ndarray) -> np.ndarray:
    """(S, C) last encoder hidden states for one unpadded source row."""
    ids = torch.from_numpy(src.astype(np.int64))[None]
    return model.get_encoder()(input_ids=ids).last_hidden_state[0].numpy()


@torch.no_grad()
def hf_logits(model, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """(T, V) logits of a full (uncached) forward pass over one unpadded source and target row."""
    out = model(
        input_ids=torch.from_numpy(src.astype(np.int64))[None],
        decoder_input_ids=torch.from_numpy(tgt.astype(np.int64))[None],
        use_cache=False,
    )
    return out.logits[0].numpy()


def max_rel_diff(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours - ref| relative to the scale of ref (its largest magnitude, at least 1)."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref), initial=0.0) / max(1.0, float(np.max(np.abs(ref), initial=0.0))))


@torch.no_grad()
def hf_cross_attention(model, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """(T, S) cross-attention of the last decoder layer's first head (the alignment head), one unpadded row."""
    out = model(
        input_ids=torch.from_numpy(src.astype(np.int64))[None],
        decoder_input_ids=torch.from_numpy(tgt.astype(np.int64))[None],
        use_cache=False,
        output_attentions=True,
    )
    return out.cross_attentions[-1][0, 0].numpy()
