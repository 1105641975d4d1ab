"""`Encoder`: encoder-only models (BERT, RoBERTa, DistilBERT, XLM-RoBERTa) behind `await`.

`forward_batch` is CTranslate2's: last hidden states and the pooled output per batch. `embed` gives
sentence embeddings, pooled on the worker as the model's sentence-transformers config says
(`pooling.py`). Each call is one forward pass; concurrent calls queue like the other engines'.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends import host_float32
from ..convert.bergamot import resolve_model_path
from ..decoding.search import pad
from ..runtime import Request
from . import inputs
from .batching import complete
from .model_engine import ModelEngine
from .pooling import SentencePooling


@dataclass
class EncoderForwardOutput:
    """last_hidden_state (B, S, C) float32, zero past each length; pooler_output (B, C) or None."""

    last_hidden_state: np.ndarray
    pooler_output: np.ndarray | None


class Encoder(ModelEngine):
    """Run an encoder-only model. See `Engine` for threads, queue and lifecycle."""

    _thread_name = "encoder"

    def __init__(self, model_path: str | Path, *args, **kwargs) -> None:
        self._pooling = SentencePooling.read(resolve_model_path(model_path))
        super().__init__(model_path, *args, **kwargs)

    @property
    def num_encoders(self) -> int:
        return self._pool.num_workers  # inter_threads per device: CTranslate2 counts them all

    def _request(
        self, batch, token_type_ids=None, timeout: float | None = None, kind: str = "forward", lengths=None
    ) -> Request:
        loaded = self._loaded
        if lengths is not None:  # a padded batch (CTranslate2's form for arrays): each row's first tokens
            batch = inputs.trimmed(batch, lengths)
            token_type_ids = None if token_type_ids is None else inputs.trimmed(token_type_ids, lengths)
        ids = inputs.to_ids(batch, loaded.tokenizer, loaded.model.vocab_size, name="input")
        if not ids or any(len(x) == 0 for x in ids):
            raise ValueError("input must hold at least one non-empty example")
        if token_type_ids is not None:
            token_type_ids = [list(map(int, t)) for t in token_type_ids]
            if [len(t) for t in token_type_ids] != [len(x) for x in ids]:
                raise ValueError("token_type_ids must have the length of each input")
        if kind == "embed" and not self._pooling.modes and loaded.model.pooler is None:
            raise ValueError("this model has no pooled output and no sentence-transformers pooling config")
        # One call is one forward pass: its examples stay together (key unique to the call).
        return Request((kind, id(ids)), [(ids, token_type_ids)], None,
                       num_tokens=sum(map(len, ids)), timeout=timeout)

    async def forward_batch(
        self, inputs, lengths=None, token_type_ids=None, *, timeout: float | None = None
    ) -> EncoderForwardOutput:
        """Encode a batch (texts, token strings or ids): hidden states and pooled output. As in
        CTranslate2, `lengths` says how many tokens of each row of a padded batch (an integer array
        (B, S)) are the example's, and token_type_ids follows the inputs' form."""
        return (await self._run(self._request(inputs, token_type_ids, timeout, lengths=lengths)))[0]

    def submit_forward_batch(
        self, inputs, lengths=None, token_type_ids=None, *, timeout=None
    ) -> concurrent.futures.Future:
        """`forward_batch` from a plain thread: a Future of its EncoderForwardOutput."""
        return self._submit_one(self._request(inputs, token_type_ids, timeout, lengths=lengths))

    async def embed(self, texts, *, timeout: float | None = None) -> np.ndarray:
        """Sentence embeddings of a batch (texts, token strings or ids): float32 (B, C), mean-pooled
        and L2-normalised for a sentence-transformers model as its config says, else the pooled output."""
        return (await self._run(self._request(texts, timeout=timeout, kind="embed")))[0]

    def embed_nowait(self, texts, *, timeout: float | None = None) -> asyncio.Future:
        """`embed`, admitted at once or QueueFull; await the returned future."""
        admitted = self._nowait_all([self._request(texts, timeout=timeout, kind="embed")], [[0]])

        async def embeddings():
            return (await admitted)[0]

        return asyncio.ensure_future(embeddings())

    def _run_batch(self, context, requests: list[Request]) -> None:
        outputs = []
        for r in requests:
            ids, types = r.examples[0]
            padded, lengths = pad(ids)
            type_ids = None if types is None else pad(types)[0]
            hidden, pooled = self._model(context).forward(padded, lengths, type_ids, n_threads=context.n_threads)
            hidden, pooled = host_float32(hidden), None if pooled is None else host_float32(pooled)
            if r.key[0] == "embed":
                outputs.append(self._pooling(hidden, lengths, pooled))
            else:
                outputs.append(EncoderForwardOutput(hidden, pooled))
        complete(requests, outputs)


__all__ = ["Encoder", "EncoderForwardOutput"]
