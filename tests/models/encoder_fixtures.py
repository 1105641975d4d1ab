"""Tiny random-weight transformers encoders (BERT, RoBERTa, DistilBERT, XLM-RoBERTa) saved to a
temp dir, and their reference hidden states computed by transformers (no downloads).

Odd sizes as in `seq2seq_fixtures`: 3 heads of dim 6, a vocabulary of 53. "bert_mlm" saves a
`BertForMaskedLM` (weights under "bert.", an MLM head, no pooler), as real BERT checkpoints ship.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from seq2seq_fixtures import randomize

torch.set_num_threads(1)

VOCAB, HIDDEN, HEADS, FFN, LAYERS, MAX_LENGTH = 53, 18, 3, 22, 2, 20

ENCODER_KINDS = ("bert", "bert_mlm", "roberta", "distilbert", "xlm_roberta")


def encoder_config(kind: str):
    import transformers as tf

    bert_like = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
    )
    if kind in ("bert", "bert_mlm"):
        return tf.BertConfig(**bert_like, max_position_embeddings=MAX_LENGTH, type_vocab_size=3)
    if kind in ("roberta", "xlm_roberta"):
        # Positions start after padding_idx (1): the table holds MAX_LENGTH + 2 rows, as 514 for 512.
        cls = tf.RobertaConfig if kind == "roberta" else tf.XLMRobertaConfig
        return cls(**bert_like, max_position_embeddings=MAX_LENGTH + 2, type_vocab_size=1, layer_norm_eps=1e-5)
    if kind == "distilbert":
        return tf.DistilBertConfig(
            vocab_size=VOCAB,
            dim=HIDDEN,
            n_layers=LAYERS,
            n_heads=HEADS,
            hidden_dim=FFN,
            max_position_embeddings=MAX_LENGTH,
        )
    raise ValueError(f"unknown kind {kind!r}; expected one of {ENCODER_KINDS}")


def _model_class(kind: str):
    import transformers as tf

    return tf.AutoModelForMaskedLM if kind == "bert_mlm" else tf.AutoModel


def build_encoder(kind: str, root: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = _model_class(kind).from_config(encoder_config(kind)).eval()
    randomize(model, seed)
    model.save_pretrained(root, safe_serialization=True)
    return root


def load_hf_encoder(kind: str, root: Path):
    """The saved encoder reloaded by transformers; for "bert_mlm" its base model (no pooler)."""
    model = _model_class(kind).from_pretrained(root).eval()
    return model.base_model if kind == "bert_mlm" else model


@torch.no_grad()
def hf_encode(model, ids: np.ndarray, token_type_ids: np.ndarray | None = None):
    """(S, C) last hidden states and (C,) pooled output (or None) for one unpadded row."""
    kwargs = {"input_ids": torch.from_numpy(ids.astype(np.int64))[None]}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = torch.from_numpy(token_type_ids.astype(np.int64))[None]
    out = model(**kwargs)
    pooled = getattr(out, "pooler_output", None)
    return out.last_hidden_state[0].numpy(), None if pooled is None else pooled[0].numpy()
