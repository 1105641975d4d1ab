"""Marian / OPUS-MT tokenization: SentencePiece models plus a JSON piece -> id map.

Files of an OPUS-MT directory: `source.spm` and `target.spm` (SentencePiece models, one per
language side), `vocab.json` (the model's piece -> id map, usually shared by both sides) and, for
models with `separate_vocabs` in `tokenizer_config.json`, `target_vocab.json` for the decoder side.
The ids of the SentencePiece models themselves are never used: pieces go through the JSON map.

Encode: an optional leading language code such as ">>fra<<" stays one token, the rest is split
by the side's SentencePiece model, pieces map through the vocabulary (unknown -> <unk>), and
</s> is appended. Decode: ids -> pieces -> `decode_pieces`, as transformers' MarianTokenizer does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sentencepiece

from ..errors import ModelLoadError
from .base import clean_up_tokenization, cleanup_enabled, read_json, special_token_names

# SentencePiece's word-boundary marker; transformers turns any left after decoding into spaces.
_SPIECE_UNDERLINE = "\u2581"


class _Side:
    """One language side: its SentencePiece model and its piece <-> id maps."""

    def __init__(self, spm_path: Path, vocab_path: Path | None):
        try:
            self.spm = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
        except (OSError, RuntimeError) as e:
            raise ModelLoadError(f"{spm_path}: cannot load SentencePiece model ({e})") from e
        if vocab_path is None:  # Marian C++ `.spm` vocabularies (Bergamot): the piece ids are the model's
            vocab = {self.spm.id_to_piece(i): i for i in range(self.spm.get_piece_size())}
        else:
            vocab = read_json(vocab_path)
        if not all(isinstance(i, int) for i in vocab.values()):
            raise ModelLoadError(f"{vocab_path}: expected a JSON object of piece -> integer id")
        self.piece_to_id: dict[str, int] = vocab
        self.id_to_piece: dict[int, str] = {i: p for p, i in vocab.items()}


class MarianTokenizer:
    def __init__(self, model_dir: str | Path, *, spm_vocabs: tuple[Path, Path] | None = None):
        """spm_vocabs: (source, target) SentencePiece models used as their own vocabularies, as
        Marian C++ (Bergamot) directories ship them; None reads source.spm, target.spm, vocab.json."""
        model_dir = Path(model_dir)
        config_path = model_dir / "tokenizer_config.json"
        config = read_json(config_path) if config_path.is_file() else {}
        if spm_vocabs is not None:
            source, target = (_Side(path, None) for path in spm_vocabs)
        else:
            source = _Side(model_dir / "source.spm", model_dir / "vocab.json")
            if config.get("separate_vocabs", False):
                target = _Side(model_dir / "target.spm", model_dir / "target_vocab.json")
            else:
                target = _Side(model_dir / "target.spm", model_dir / "vocab.json")
        self._sides = (source, target)

        names = special_token_names(model_dir)
        unk, eos, pad = names.get("unk_token", "<unk>"), names.get("eos_token", "</s>"), names.get("pad_token", "<pad>")
        if unk not in source.piece_to_id:
            raise ModelLoadError(f"{model_dir / 'vocab.json'}: the unknown token {unk!r} is not in the vocabulary")
        self._unk, self._eos = unk, eos
        self._special_tokens = frozenset([unk, eos, pad, *names.get("additional_special_tokens", [])])
        self.vocab_size = len(source.piece_to_id)
        self.unk_id = source.piece_to_id[unk]
        self.eos_id = source.piece_to_id.get(eos)
        self.pad_id = source.piece_to_id.get(pad)
        self.bos_id = None  # Marian sentences have no beginning marker; decoding starts from pad
        self.special_ids = frozenset(target.piece_to_id[t] for t in self._special_tokens if t in target.piece_to_id)
        self._cleanup = cleanup_enabled(model_dir)

    def _side(self, target: bool) -> _Side:
        return self._sides[1] if target else self._sides[0]

    def tokenize(
        self, texts: Sequence[str], *, target: bool = False, add_special_tokens: bool = True
    ) -> list[list[str]]:
        side = self._side(target)
        codes, bodies = zip(*map(_split_language_code, texts)) if texts else ((), ())
        pieces = side.spm.encode(list(bodies), out_type=str)
        suffix = [self._eos] if add_special_tokens else []
        return [code + row + suffix for code, row in zip(codes, pieces)]

    def encode(self, texts: Sequence[str], *, target: bool = False, add_special_tokens: bool = True) -> list[list[int]]:
        tokens = self.tokenize(texts, target=target, add_special_tokens=add_special_tokens)
        return self.tokens_to_ids(tokens, target=target)

    def tokens_to_ids(self, tokens: Sequence[Sequence[str]], *, target: bool = False) -> list[list[int]]:
        vocab = self._side(target).piece_to_id
        unk = vocab.get(self._unk, self.unk_id)
        return [[vocab.get(t, unk) for t in row] for row in tokens]

    def ids_to_tokens(self, ids: Sequence[Sequence[int]], *, target: bool = True) -> list[list[str]]:
        pieces = self._side(target).id_to_piece
        out = []
        for row in ids:
            try:
                out.append([pieces[int(i)] for i in row])
            except KeyError as e:
                raise ValueError(f"token id {e.args[0]} is not in the vocabulary") from None
        return out

    def decode(
        self, ids: Sequence[Sequence[int]], *, target: bool = True, skip_special_tokens: bool = True
    ) -> list[str]:
        texts = self._decode_raw(ids, target, skip_special_tokens)
        return [clean_up_tokenization(t) for t in texts] if self._cleanup else texts

    def _decode_raw(self, ids: Sequence[Sequence[int]], target: bool, skip_special_tokens: bool) -> list[str]:
        side = self._side(target)
        return [self._pieces_to_text(side, row, skip_special_tokens) for row in self.ids_to_tokens(ids, target=target)]

    def _pieces_to_text(self, side: _Side, pieces: list[str], skip_special_tokens: bool) -> str:
        # Special tokens are not SentencePiece pieces: the runs between them are decoded apart and
        # each kept special token is written verbatim followed by a space.
        text, run = "", []
        for piece in pieces:
            if piece in self._special_tokens:
                if not skip_special_tokens:
                    text += side.spm.decode_pieces(run) + piece + " "
                    run = []
            else:
                run.append(piece)
        text += side.spm.decode_pieces(run)
        return text.replace(_SPIECE_UNDERLINE, " ").strip()

    def detokenizer(self, *, skip_special_tokens: bool = True) -> _PrefixDetokenizer:
        return _PrefixDetokenizer(self, skip_special_tokens)


def _split_language_code(text: str) -> tuple[list[str], str]:
    """A leading ">>xx<<" target-language code is one token, never split by SentencePiece."""
    if text.startswith(">>"):
        end = text.find("<<")
        if end != -1:
            return [text[: end + 2]], text[end + 2 :]
    return [], text


class _PrefixDetokenizer:
    """SentencePiece has no streaming decoder: decode the whole prefix each step and emit what
    was added since the last emitted text. Without the punctuation clean-up (which, as with
    `DecodeStream`, is not applied to streams) a longer prefix only appends text; a prefix ending
    in U+FFFD is held back, as a byte-fallback character is not complete yet."""

    def __init__(self, tokenizer: MarianTokenizer, skip_special_tokens: bool):
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._emitted = ""

    def step(self, token_id: int) -> str | None:
        self._ids.append(int(token_id))
        text = self._tokenizer._decode_raw([self._ids], True, self._skip)[0]
        if text.endswith("\ufffd") or len(text) == len(self._emitted):
            return None
        chunk = text[len(self._emitted) :]
        self._emitted = text
        return chunk
