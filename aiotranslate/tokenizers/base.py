"""What every tokenizer offers, and the small pieces the two kinds share.

A tokenizer maps text to token ids and back for one model directory. Inputs may also arrive as
token strings (CTranslate2 style, `[["▁Hello", "▁world", "</s>"]]`), so both directions of the
token <-> id mapping are public. Seq2seq models may tokenize their two sides differently (Marian
ships a source and a target SentencePiece model): `target=True` selects the decoder side; the
defaults follow the usual direction (encode the source, decode the target).

This module holds no tokenization algorithm: BPE, WordPiece and SentencePiece come from the
`tokenizers` and `sentencepiece` libraries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..errors import ModelLoadError


class Detokenizer(Protocol):
    """Incremental detokenization of one generated sequence (one per request)."""

    def step(self, token_id: int) -> str | None:
        """Append one id; return the new text it completes, or None while it completes none yet
        (a multi-byte character split over tokens, a skipped special token)."""
        ...


class Tokenizer(Protocol):
    vocab_size: int
    unk_id: int | None
    pad_id: int | None
    bos_id: int | None
    eos_id: int | None
    special_ids: frozenset[int]

    def tokenize(
        self, texts: Sequence[str], *, target: bool = False, add_special_tokens: bool = True
    ) -> list[list[str]]:
        """Texts -> token strings per text (special tokens added as the model expects)."""
        ...

    def encode(self, texts: Sequence[str], *, target: bool = False, add_special_tokens: bool = True) -> list[list[int]]:
        """Texts -> token ids per text."""
        ...

    def decode(
        self, ids: Sequence[Sequence[int]], *, target: bool = True, skip_special_tokens: bool = True
    ) -> list[str]:
        """Token ids per sequence -> texts."""
        ...

    def tokens_to_ids(self, tokens: Sequence[Sequence[str]], *, target: bool = False) -> list[list[int]]:
        """Token strings -> ids; an unknown token maps to the unknown id (ValueError if none)."""
        ...

    def ids_to_tokens(self, ids: Sequence[Sequence[int]], *, target: bool = True) -> list[list[str]]:
        """Ids -> token strings (ValueError for an id outside the vocabulary)."""
        ...

    def detokenizer(self, *, skip_special_tokens: bool = True) -> Detokenizer:
        """A fresh incremental detokenizer for one generated (target side) sequence."""
        ...


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: cannot read JSON ({e})") from e


def special_token_names(model_dir: Path) -> dict[str, str]:
    """Names of the bos/eos/pad/unk tokens (and `additional_special_tokens` as a list) declared by
    `tokenizer_config.json` or `special_tokens_map.json`; values may be plain strings or
    AddedToken dicts with a "content" key."""
    names: dict = {}
    for file in ("special_tokens_map.json", "tokenizer_config.json"):  # the config wins
        path = model_dir / file
        if not path.is_file():
            continue
        data = read_json(path)
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                names[key] = value
        extra = data.get("additional_special_tokens") or data.get("extra_special_tokens")
        if isinstance(extra, list):
            names["additional_special_tokens"] = [t["content"] if isinstance(t, dict) else t for t in extra]
    return names


def cleanup_enabled(model_dir: Path) -> bool:
    """Whether transformers would apply `clean_up_tokenization` when decoding this tokenizer."""
    path = model_dir / "tokenizer_config.json"
    return bool(path.is_file() and read_json(path).get("clean_up_tokenization_spaces", False))


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces WordPiece-era tokenizers leave before punctuation and English
    contractions; transformers applies this when `clean_up_tokenization_spaces` is set."""
    for spaced, joined in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(spaced, joined)
    return text
