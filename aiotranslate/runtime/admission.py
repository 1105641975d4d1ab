"""The bounded admission queue between callers and workers, and the batch former.

The queue is bounded by a number of requests (`maxsize`) and optionally by the tokens they hold
(`max_tokens`, CTranslate2's "optional admission limit by queued tokens"); a request larger than
`max_tokens` on its own is still admitted into an empty queue, or it could never run.
Callers put `Request`s in three ways: `put_nowait` (raises QueueFull at once), `put` (a plain
thread blocks until there is room) and `aput` (a coroutine waits without blocking the event loop).
Workers take batches with `get_batch`: the oldest request plus every queued request with the same
key, up to a size limit, waiting at most `batch_window` seconds for more to arrive when the batch
is not full (dynamic batching). Everything is guarded by one lock; async waiters are woken through
their loop's `call_soon_threadsafe`, never by touching asyncio objects from a worker thread.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

from ..errors import EngineClosed, QueueFull
from .request import Request


class AdmissionQueue:
    """FIFO of requests holding at most `maxsize` of them and `max_tokens` of their tokens
    (each `<= 0`: unbounded)."""

    def __init__(self, maxsize: int, max_tokens: int = 0) -> None:
        self.maxsize = maxsize
        self.max_tokens = max_tokens
        self._items: collections.deque[Request] = collections.deque()
        self._tokens = 0  # sum of num_tokens over _items
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)  # workers wait here
        self._not_full = threading.Condition(self._lock)  # blocking producers wait here
        self._async_waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = (
            collections.deque()
        )
        self._closed = False

    # -- producers --------------------------------------------------------------------------

    def _full(self, request: Request) -> bool:
        """No room for `request` (lock held)."""
        if 0 < self.maxsize <= len(self._items):
            return True
        return 0 < self.max_tokens < self._tokens + request.num_tokens and bool(self._items)

    def _append(self, request: Request) -> None:
        self._items.append(request)
        self._tokens += request.num_tokens
        self._not_empty.notify()
        if 0 < self.max_tokens and self._tokens < self.max_tokens and not 0 < self.maxsize <= len(self._items):
            self._wake_one()  # tokens left: the next waiter may fit too (one removal can free room for many)

    def put_nowait(self, request: Request) -> None:
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is closed")
            if 0 < self.maxsize <= len(self._items):
                raise QueueFull(f"the queue holds {len(self._items)} batches (max_queued_batches)")
            if self._full(request):
                raise QueueFull(
                    f"the queue holds {self._tokens} tokens; {request.num_tokens} more exceed max_queued_tokens"
                )
            self._append(request)

    def put(self, request: Request, timeout: float | None = None) -> None:
        """Block the calling (non-loop) thread until there is room."""
        with self._lock:
            end = None if timeout is None else time.monotonic() + timeout
            while not self._closed and self._full(request):
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise QueueFull("timed out waiting for room in the queue")
                self._not_full.wait(left)
            if self._closed:
                raise EngineClosed("the engine is closed")
            self._append(request)

    async def aput(self, request: Request) -> None:
        """Wait on the event loop (backpressure) until there is room; cancellable while waiting."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._closed:
                    raise EngineClosed("the engine is closed")
                if not self._full(request):
                    self._append(request)
                    return
                waiter = loop.create_future()
                self._async_waiters.append((loop, waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                with self._lock:
                    try:
                        self._async_waiters.remove((loop, waiter))
                    except ValueError:  # a waker already picked us: pass its wake-up on
                        self._wake_one()
                raise

    def _wake_one(self) -> None:
        """Room was made (lock held): wake one blocked thread and one async waiter to retry."""
        self._not_full.notify()
        while self._async_waiters:
            loop, waiter = self._async_waiters.popleft()
            try:
                loop.call_soon_threadsafe(_resolve, waiter)
                return
            except RuntimeError:  # that loop is closed: its waiter is gone, try the next
                continue

    # -- consumers --------------------------------------------------------------------------

    def get_batch(
        self, max_examples: int = 0, max_tokens: int = 0, batch_window: float = 0.0
    ) -> list[Request] | None:
        """Block until work is queued, then take a batch of compatible requests.

        The batch is the oldest request plus later ones with the same key while the totals stay
        within max_examples / max_tokens (0 = no limit). Returns None once the queue is closed
        and empty.
        """
        with self._lock:
            while not self._items:
                if self._closed:
                    return None
                self._not_empty.wait()
            batch = [self._pop()]
            deadline = time.monotonic() + batch_window
            while True:
                self._take_compatible(batch, max_examples, max_tokens)
                left = deadline - time.monotonic()
                if left <= 0 or self._closed or _is_full(batch, max_examples, max_tokens):
                    break
                self._not_empty.wait(left)
            for _ in batch:
                self._wake_one()
            return batch

    def _pop(self) -> Request:
        request = self._items.popleft()
        self._tokens -= request.num_tokens
        return request

    def _take_compatible(self, batch: list[Request], max_examples: int, max_tokens: int) -> None:
        key = batch[0].key
        examples = sum(len(r) for r in batch)
        tokens = sum(r.num_tokens for r in batch)
        kept: collections.deque[Request] = collections.deque()
        while self._items:
            r = self._items.popleft()
            fits = (not max_examples or examples + len(r) <= max_examples) and (
                not max_tokens or tokens + r.num_tokens <= max_tokens
            )
            if r.key == key and fits:
                batch.append(r)
                examples += len(r)
                tokens += r.num_tokens
                self._tokens -= r.num_tokens
            else:
                kept.append(r)
        self._items = kept

    def take(self, key, max_examples: int = 0) -> list[Request]:
        """Without waiting, take the queued requests with `key` that stand before any request with
        another key, within max_examples (0 = no limit): those that may join a running batch.
        Stopping at another key keeps the queue fair: that request is served next."""
        with self._lock:
            taken: list[Request] = []
            examples = 0
            while self._items and self._items[0].key == key:
                if max_examples and examples + len(self._items[0]) > max_examples:
                    break
                taken.append(self._pop())
                examples += len(taken[-1])
                self._wake_one()
            return taken

    def remove(self, request: Request) -> bool:
        """Take a still-queued request out (cancellation); False if a worker already has it."""
        with self._lock:
            try:
                self._items.remove(request)
            except ValueError:
                return False
            self._tokens -= request.num_tokens
            self._wake_one()
            return True

    # -- lifecycle --------------------------------------------------------------------------

    def close(self, drain: bool = True) -> list[Request]:
        """Refuse new requests and wake every waiter. With drain, workers still get what is
        queued; without, the queued requests are taken out and returned (to be cancelled)."""
        with self._lock:
            self._closed = True
            left = [] if drain else list(self._items)
            if not drain:
                self._items.clear()
                self._tokens = 0
            self._not_empty.notify_all()
            self._not_full.notify_all()
            while self._async_waiters:
                loop, waiter = self._async_waiters.popleft()
                try:
                    loop.call_soon_threadsafe(_resolve, waiter)
                except RuntimeError:
                    pass
            return left

    def __len__(self) -> int:
        return len(self._items)

    def snapshot(self) -> tuple[int, int, int]:
        """(requests, examples, tokens) queued right now."""
        with self._lock:
            return (
                len(self._items),
                sum(len(r) for r in self._items),
                self._tokens,
            )


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _is_full(batch: list[Request], max_examples: int, max_tokens: int) -> bool:
    return bool(max_examples and sum(len(r) for r in batch) >= max_examples) or bool(
        max_tokens and sum(r.num_tokens for r in batch) >= max_tokens
    )
