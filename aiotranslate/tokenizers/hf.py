"""Tokenizers stored as a Hugging Face `tokenizer.json` (BART, mBART, NLLB, BERT, RoBERTa, GPT-2,
Llama, ...), run by the `tokenizers` library.

The pipeline in the file (normalizer, pre-tokenizer, model, post-processor, decoder) is the whole
truth: special tokens such as [CLS]/[SEP], <s>...</s> or an NLLB language code are added by its
post-processor, exactly as `PreTrainedTokenizerFast` adds them. Streaming output goes through
`tokenizers.decoders.DecodeStream`, which holds back incomplete UTF-8 and byte-fallback pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer as _RustTokenizer
from tokenizers.decoders import DecodeStream

from ..errors import ModelLoadError
from .base import clean_up_tokenization, cleanup_enabled, special_token_names


class HFTokenizer:
    """One `tokenizer.json` for both sides of the model (`target` is accepted and ignored)."""

    def __init__(self, model_dir: str | Path):
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        try:
            self._tok = _RustTokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises a plain Exception on a bad file
            raise ModelLoadError(f"{path}: cannot load tokenizer ({e})") from e
        # Padding and truncation belong to the batcher and the caller, not to tokenization.
        self._tok.no_padding()
        self._tok.no_truncation()
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        names = special_token_names(model_dir)
        self.unk_id = self._id_of(names.get("unk_token"))
        self.pad_id = self._id_of(names.get("pad_token"))
        self.bos_id = self._id_of(names.get("bos_token"))
        self.eos_id = self._id_of(names.get("eos_token"))
        self.special_ids = frozenset(i for i, t in self._tok.get_added_tokens_decoder().items() if t.special)
        # transformers skips its clean-up for BPE models: it would eat real spaces before punctuation.
        self._cleanup = cleanup_enabled(model_dir) and type(self._tok.model).__name__ != "BPE"

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    def tokenize(
        self, texts: Sequence[str], *, target: bool = False, add_special_tokens: bool = True
    ) -> list[list[str]]:
        return [e.tokens for e in self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def encode(self, texts: Sequence[str], *, target: bool = False, add_special_tokens: bool = True) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def decode(
        self, ids: Sequence[Sequence[int]], *, target: bool = True, skip_special_tokens: bool = True
    ) -> list[str]:
        texts = self._tok.decode_batch([list(map(int, row)) for row in ids], skip_special_tokens=skip_special_tokens)
        return [clean_up_tokenization(t) for t in texts] if self._cleanup else texts

    def tokens_to_ids(self, tokens: Sequence[Sequence[str]], *, target: bool = False) -> list[list[int]]:
        out = []
        for row in tokens:
            ids = []
            for token in row:
                i = self._tok.token_to_id(token)
                if i is None:
                    if self.unk_id is None:
                        raise ValueError(f"token {token!r} is not in the vocabulary, which has no unknown token")
                    i = self.unk_id
                ids.append(i)
            out.append(ids)
        return out

    def ids_to_tokens(self, ids: Sequence[Sequence[int]], *, target: bool = True) -> list[list[str]]:
        out = []
        for row in ids:
            tokens = []
            for i in row:
                token = self._tok.id_to_token(int(i))
                if token is None:
                    raise ValueError(f"token id {i} is out of range for a vocabulary of {self.vocab_size}")
                tokens.append(token)
            out.append(tokens)
        return out

    def detokenizer(self, *, skip_special_tokens: bool = True) -> _StreamDetokenizer:
        return _StreamDetokenizer(self._tok, skip_special_tokens)


class _StreamDetokenizer:
    """`DecodeStream` bound to its tokenizer (the library's step takes both)."""

    def __init__(self, tok: _RustTokenizer, skip_special_tokens: bool):
        self._tok = tok
        self._stream = DecodeStream(skip_special_tokens=skip_special_tokens)

    def step(self, token_id: int) -> str | None:
        return self._stream.step(self._tok, int(token_id))
