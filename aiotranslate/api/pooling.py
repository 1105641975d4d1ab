"""Sentence embeddings from an encoder's outputs, as sentence-transformers computes them.

A sentence-transformers directory lists its modules in `modules.json`: the transformer (the
directory itself), a `Pooling` module (`1_Pooling/config.json`: which token vectors make the
sentence vector) and often `Normalize` (unit L2 length). `SentencePooling.read` follows that list;
a directory without it embeds a sentence as the model's pooled output (BERT's pooler), unnormalised.

What it is not: a sentence-transformers runtime. Modules that change the vectors otherwise (Dense
layers, ...) are refused rather than skipped, prompts are not excluded from pooling, and inputs are
not cut at the `max_seq_length` of `sentence_bert_config.json` (longer texts give what the full
text gives, or an error past the model's positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError
from ..tokenizers.base import read_json

# The pooling modes of sentence-transformers; the legacy boolean keys in the order it reads them.
LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
MODES = tuple(LEGACY_KEYS.values())
KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class SentencePooling:
    """How one model turns (B, S, C) hidden states into (B, C') sentence vectors. `modes` empty:
    the model's pooled output; several modes: their vectors concatenated in that order."""

    modes: tuple[str, ...] = ()
    normalize: bool = False

    @classmethod
    def read(cls, model_dir: Path) -> SentencePooling:
        modules_file = model_dir / "modules.json"
        if modules_file.is_file():
            modules = read_json(modules_file)
            kinds = {m.get("type", "").rsplit(".", 1)[-1]: m.get("path", "") for m in modules}
            unknown = [k for k in kinds if k not in KNOWN_MODULES]
            if unknown:
                raise ModelLoadError(f"{modules_file}: sentence-transformers module(s) {unknown} are not supported")
            pooling = model_dir / kinds["Pooling"] / "config.json" if "Pooling" in kinds else None
            return cls(_read_modes(pooling) if pooling else (), "Normalize" in kinds)
        pooling = model_dir / "1_Pooling" / "config.json"
        return cls(_read_modes(pooling) if pooling.is_file() else ())

    def __call__(self, hidden: np.ndarray, lengths: np.ndarray, pooled: np.ndarray | None) -> np.ndarray:
        """hidden (B, S, C) float32, zero past each length; lengths (B,); pooled (B, C), needed
        without modes."""
        if self.modes:
            vectors = np.concatenate([_pool(mode, hidden, lengths) for mode in self.modes], axis=-1)
        else:
            vectors = pooled
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.normalize:  # as torch.nn.functional.normalize: x / max(|x|, 1e-12)
            norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors


def _read_modes(config_file: Path) -> tuple[str, ...]:
    config = read_json(config_file)
    if "pooling_mode" in config:  # sentence-transformers >= 6: a mode or a list of modes
        mode = config["pooling_mode"]
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    else:
        modes = tuple(mode for key, mode in LEGACY_KEYS.items() if config.get(key)) or ("mean",)
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ModelLoadError(f"{config_file}: unknown pooling mode(s) {bad}; known: {', '.join(MODES)}")
    if config.get("include_prompt") is False:
        raise ModelLoadError(f"{config_file}: include_prompt=false (pooling without the prompt) is not supported")
    return modes


def _pool(mode: str, hidden: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One mode's (B, C) vectors; rows are right-padded, so a row's tokens are hidden[b, :lengths[b]]."""
    B, S, _ = hidden.shape
    mask = (np.arange(S)[None, :] < lengths[:, None])[:, :, None]  # (B, S, 1)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        return hidden[np.arange(B), lengths - 1]
    if mode == "max":
        return np.where(mask, hidden, -np.inf).max(axis=1)
    if mode == "weightedmean":  # position i (from 1) weighs i
        weights = mask * np.arange(1, S + 1, dtype=np.float32)[None, :, None]
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    total = (hidden * mask).sum(axis=1)
    count = np.maximum(lengths.astype(np.float32), 1e-9)[:, None]
    return total / (count if mode == "mean" else np.sqrt(count))
