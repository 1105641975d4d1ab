"""Tokenizers stored as a Hugging Face `tokenizer.json` (BART, mBART, NLLB, BERT, RoBERTa, GPT-2,
Llama, ...), run by the `tokenizers` library.

The pipeline in the file (normalizer, pre-tokenizer, model, post-processor, decoder) is the whole
truth: special tokens such as [CLS]/[SEP], <s>...</s> or an NLLB language code are added by its
post-processor, exactly as `PreTrainedTokenizerFast` adds them. Streaming output goes through
`tokenizers.decoders.DecodeStream`, which holds back incomplete UTF-8 and byte-fallback pieces.
A pipeline built from another format (a GGUF's vocabulary: `tokenizers/gguf.py`) is wrapped the same
way (`HFTokenizer.from_backend`). `apply_chat_template` turns messages into prompt ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tokenizers import Tokenizer as _RustTokenizer
from tokenizers.decoders import DecodeStream

from ..errors import ModelLoadError
from .base import clean_up_tokenization, cleanup_enabled, special_token_names
from .chat import read_chat_template, render_chat

SPECIAL_ROLES = ("unk", "pad", "bos", "eos")


class HFTokenizer:
    """A `tokenizers.Tokenizer` with the model's special tokens and chat template: one
    `tokenizer.json` for both sides of the model (`target` is accepted and ignored), or a pipeline
    built from another format's vocabulary (`from_backend`: GGUF)."""

    def __init__(self, model_dir: str | Path):
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        try:
            tok = _RustTokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises a plain Exception on a bad file
            raise ModelLoadError(f"{path}: cannot load tokenizer ({e})") from e
        names = special_token_names(model_dir)
        # transformers skips its clean-up for BPE models: it would eat real spaces before punctuation.
        cleanup = cleanup_enabled(model_dir) and type(tok.model).__name__ != "BPE"
        self._setup(tok, {k: names.get(f"{k}_token") for k in SPECIAL_ROLES}, cleanup, read_chat_template(model_dir))

    @classmethod
    def from_backend(
        cls, tok: _RustTokenizer, special_tokens: dict[str, str | None], chat_template: str | None = None
    ) -> HFTokenizer:
        """Wrap a built pipeline; special_tokens maps "unk", "pad", "bos", "eos" to token strings."""
        self = cls.__new__(cls)
        self._setup(tok, special_tokens, False, chat_template)
        return self

    def _setup(self, tok: _RustTokenizer, special_tokens: dict, cleanup: bool, chat_template: str | None) -> None:
        self._tok = tok
        # Padding and truncation belong to the batcher and the caller, not to tokenization.
        self._tok.no_padding()
        self._tok.no_truncation()
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.special_tokens = {k: special_tokens.get(k) for k in SPECIAL_ROLES}
        self.unk_id, self.pad_id, self.bos_id, self.eos_id = (self._id_of(self.special_tokens[k]) for k in SPECIAL_ROLES)
        self.special_ids = frozenset(i for i, t in self._tok.get_added_tokens_decoder().items() if t.special)
        self._cleanup = cleanup
        self.chat_template = chat_template

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    def apply_chat_template(self, messages: Sequence[Mapping[str, object]], *, add_generation_prompt: bool = True) -> list[int]:
        """The prompt ids of a conversation, as transformers' `apply_chat_template(messages,
        add_generation_prompt=True)` gives them: the rendered text (`chat.render_chat`) encoded
        without adding special tokens (the template writes those it wants)."""
        if self.chat_template is None:
            raise ValueError("this model ships no chat template")
        text = render_chat(
            self.chat_template,
            messages,
            add_generation_prompt=add_generation_prompt,
            **{f"{k}_token": v for k, v in self.special_tokens.items()},
        )
        return self._tok.encode(text, add_special_tokens=False).ids

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
