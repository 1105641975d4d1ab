"""The states of static prompts, kept across calls (CTranslate2's `cache_static_prompt`).

A `static_prompt` (a system prompt) precedes every prompt of a generation call. Reading it again
for every batch costs a prefill of its length per batch; instead the engine reads it once per
model into a one-row decoder state, and each batch that starts with it copies those keys and
values into its rows (`DecoderOnlyState.start_from`), then reads only its own prompts
(`decoding.search.prefill`). The outputs are those of reading it with every batch, up to the
float rounding of a differently shaped product.

The cache is shared by the engine's worker threads, holds the few most recently used prompts
(`SIZE` of them: each costs a row of KV cache per layer) and is keyed by model identity, so a
reloaded model never meets a state of the one it replaced. It refers to a model weakly: an
unloaded model's weights are freed, not kept alive by its prompts.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

SIZE = 4


class StaticPromptCache:
    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[int, tuple[int, ...]], tuple[weakref.ref, object]] = OrderedDict()
        self._lock = threading.Lock()

    def state(self, model, prompt: tuple[int, ...], n_threads: int):
        """The one-row state of `model` holding `prompt`: read now, or the kept one. Callers only
        read it (`start_from`)."""
        key = (id(model), prompt)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0]() is model:
                self._entries.move_to_end(key)
                return entry[1]
        state = model.new_state(1, n_threads, capacity=len(prompt))  # two workers may both read it: harmless
        model.decode(state, np.asarray([prompt], dtype=np.int32))
        with self._lock:
            self._entries[key] = (weakref.ref(model), state)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return state
