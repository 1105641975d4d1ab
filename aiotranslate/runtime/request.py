"""One admitted unit of work: a sub-batch of examples with its options, result future and stop flags.

A `Request` is created by the API layer, travels through the admission queue to a worker, and is
completed exactly once through its `concurrent.futures.Future` (which `asyncio.wrap_future` bridges
to the event loop with `call_soon_threadsafe`). Cancellation and deadlines are flags the worker reads
between decoding steps: Python threads cannot be interrupted, so a running request stops at its next
step, not at once.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

_ids = itertools.count()


class Request:
    """Examples that must run together under one set of options.

    key: requests with equal keys may be merged into one batch by the scheduler (same operation,
    same options). num_tokens: the admission cost in tokens, for `batch_type="tokens"`.
    on_step: optional step hook (a stream's sink, a caller's callback), called on the worker thread
    with each step result; a true return stops that example. It must be cheap and never block (the
    API layer hands stream steps to the loop with call_soon_threadsafe).
    """

    __slots__ = (
        "id", "key", "examples", "options", "num_tokens", "on_step", "deadline",
        "future", "submitted_at", "started_at", "finished_at", "_cancelled",
    )

    def __init__(
        self,
        key: Hashable,
        examples: Sequence[Any],
        options: Any = None,
        *,
        num_tokens: int = 0,
        on_step: Callable[[Any], Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        self.id = next(_ids)
        self.key = key
        self.examples = examples
        self.options = options
        self.num_tokens = num_tokens
        self.on_step = on_step
        self.submitted_at = time.monotonic()
        self.deadline = None if timeout is None else self.submitted_at + timeout
        self.started_at: float | None = None
        self.finished_at: float | None = None  # when a worker completed it
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self._cancelled = threading.Event()

    def __len__(self) -> int:
        return len(self.examples)

    def cancel(self) -> None:
        """Ask the request to stop: dropped if still queued, stopped at the next step if running."""
        self._cancelled.set()
        self.future.cancel()  # succeeds only while queued (not yet set running)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def expired(self, now: float | None = None) -> bool:
        return self.deadline is not None and (time.monotonic() if now is None else now) >= self.deadline

    def should_stop(self) -> bool:
        """The per-step check of a running request: cancelled or past its deadline."""
        return self._cancelled.is_set() or self.expired()

    def set_result(self, result: Any) -> None:
        """Complete the request; a no-op if it was already completed or cancelled."""
        self.finished_at = time.monotonic()
        try:
            self.future.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass

    def set_exception(self, exc: BaseException) -> None:
        self.finished_at = time.monotonic()
        try:
            self.future.set_exception(exc)
        except concurrent.futures.InvalidStateError:
            pass

    def finish_stopped(self) -> None:
        """Complete a request that stopped early: TimeoutError past its deadline, else cancelled."""
        if self.expired() and not self._cancelled.is_set():
            self.set_exception(TimeoutError(f"request exceeded its timeout of {self.timeout:.3g} s"))
        else:
            self._cancelled.set()
            if not self.future.cancel():  # already running: cancel() cannot mark it any more
                self.set_exception(concurrent.futures.CancelledError())

    @property
    def timeout(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.submitted_at
