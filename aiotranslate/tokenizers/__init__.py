"""Tokenizers for model directories: `load_tokenizer(path)` picks the kind from the files there.

- `tokenizer.json` -> `HFTokenizer` (HF `tokenizers`): BART, mBART, NLLB, BERT, RoBERTa, ...
- `source.spm` + `target.spm` + `vocab.json` -> `MarianTokenizer` (`sentencepiece`): OPUS-MT.
- a `.gguf` file (or a directory holding one, or "smollm2") -> `HFTokenizer` built from its
  metadata (`gguf.gguf_tokenizer`).

Both implement the `Tokenizer` protocol of `base`: text or token strings in, ids out, and back,
plus an incremental `Detokenizer` per generated sequence for streaming.
"""

from __future__ import annotations

from pathlib import Path

from ..convert.bergamot import BergamotFiles, is_bergamot_dir
from ..convert.gguf import GGUFFile, find_gguf
from ..errors import ModelLoadError
from .base import Detokenizer, Tokenizer
from .gguf import gguf_tokenizer
from .hf import HFTokenizer
from .marian import MarianTokenizer

__all__ = ["Detokenizer", "HFTokenizer", "MarianTokenizer", "Tokenizer", "load_tokenizer"]

_MARIAN_FILES = ("source.spm", "target.spm", "vocab.json")


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """The tokenizer shipped in `model_dir`; ModelLoadError if it ships none we can read."""
    gguf_file = find_gguf(model_dir)
    if gguf_file is not None:
        return gguf_tokenizer(GGUFFile.open(gguf_file))
    model_dir = Path(model_dir)
    if is_bergamot_dir(model_dir):  # its tokenizer.json, if any, is a lossy copy of the .spm
        files = BergamotFiles.find(model_dir)
        return MarianTokenizer(model_dir, spm_vocabs=(files.source_vocab, files.target_vocab))
    if (model_dir / "tokenizer.json").is_file():
        return HFTokenizer(model_dir)
    if all((model_dir / f).is_file() for f in _MARIAN_FILES):
        return MarianTokenizer(model_dir)
    raise ModelLoadError(
        f"{model_dir}: no tokenizer found (expected tokenizer.json, or {', '.join(_MARIAN_FILES)}); "
        "pass token strings or ids instead of text"
    )
