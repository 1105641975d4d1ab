"""Streams of step results from a worker thread to a coroutine.

The worker never waits for the reader: `StepChannel.push` appends under a lock and schedules at
most one wake-up on the loop (call_soon_threadsafe) until the reader drains everything pending, so a
slow consumer costs the worker nothing and the loop sees one callback per burst, not per token.
Backpressure belongs at admission, not here.

`TokenStream` is what the public `generate_tokens` methods return: an async iterator that is also
an async context manager. Leaving the `async with` block (or `aclose()`) cancels the request, so
the worker stops at its next step; relying on garbage collection of an abandoned iterator would
leave the worker decoding for nobody. Outside a coroutine it is also CTranslate2's blocking
iterator: a plain `for` reads the steps from a queue, and leaving the loop cancels the request.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

_END = object()


def stream_options(options: dict, **defaults) -> dict:
    """The decoding options of a `generate_tokens` stream over `defaults`: one sequence (no
    num_hypotheses or return_alternatives), each step's log-probability unless return_scores or
    CTranslate2's name for it here, return_log_prob, turns it off."""
    if "num_hypotheses" in options or "return_alternatives" in options:
        raise TypeError("generate_tokens streams one sequence: no num_hypotheses or return_alternatives")
    options = dict(options)
    if "return_log_prob" in options:
        options["return_scores"] = bool(options.pop("return_log_prob"))
    return {"return_scores": True, **defaults, **options}


class StepChannel:
    """One request's step results, pushed by a worker thread and read on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self._wake_scheduled = False
        self._event = asyncio.Event()  # touched on the loop thread only

    # -- worker side ----------------------------------------------------------------------------

    def push(self, item: Any) -> None:
        with self._lock:
            self._pending.append(item)
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the loop is closed: nobody is reading any more
            pass

    def end(self) -> None:
        self.push(_END)

    # -- loop side ------------------------------------------------------------------------------

    def take_nowait(self) -> list[Any]:
        """Everything pushed since the last take (the `_END` marker last), possibly nothing."""
        with self._lock:
            items, self._pending = self._pending, []
            self._wake_scheduled = False
            self._event.clear()
        return items

    async def drain(self) -> list[Any]:
        """Wait until something was pushed and take it all."""
        while not (items := self.take_nowait()):
            await self._event.wait()
        return items


class TokenStream:
    """Async iterator of step results for one request, started on first use.

    `start(channel)` builds the request, which pushes its steps to `channel`, and returns an
    awaitable of its final result (admitting the request first, or having admitted it already).
    `start_blocking(put)` (None: no blocking form) builds it to call `put` with each step, admits
    it from the calling thread and returns its concurrent future. Errors of the request (bad
    input, timeout) are raised from the iteration.
    """

    def __init__(
        self,
        start: Callable[[StepChannel], Awaitable[Any]],
        cancel: Callable[[], None],
        start_blocking: Callable[[Callable[[Any], None]], concurrent.futures.Future] | None = None,
    ) -> None:
        self._start = start
        self._cancel = cancel
        self._start_blocking = start_blocking
        self._started_blocking = False
        self._channel: StepChannel | None = None
        self._result: asyncio.Future | None = None
        self._buffer: collections.deque[Any] = collections.deque()
        self._closed = False

    def start(self) -> None:
        """Start the request now, from a coroutine (the loop must be running); a no-op once
        started. Iterating or entering the stream starts it too."""
        if self._started_blocking:
            raise RuntimeError("this stream is read with a plain `for` already")
        if self._channel is None:
            channel = StepChannel(asyncio.get_running_loop())
            self._result = asyncio.ensure_future(self._start(channel))  # if this raises, not started
            self._channel = channel

    def __aiter__(self) -> TokenStream:
        return self

    def __iter__(self) -> Iterator[Any]:
        """The steps, blocking this thread between them (CTranslate2's generate_tokens, for scripts
        and threads); inside a coroutine, `async for` instead: this would block the event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise TypeError("inside a coroutine, read a token stream with `async for` (a plain `for` blocks the loop)")
        if self._start_blocking is None or self._channel is not None or self._started_blocking:
            raise RuntimeError("a plain `for` needs a stream that has not started (and not a _nowait one)")
        self._started_blocking = True
        return self._blocking_steps()

    def _blocking_steps(self) -> Iterator[Any]:
        steps: queue.SimpleQueue = queue.SimpleQueue()
        future = self._start_blocking(steps.put)
        future.add_done_callback(lambda _: steps.put(_END))  # after the last step: the worker pushes first
        try:
            while (item := steps.get()) is not _END:
                yield item
            future.result()  # the request's error, if it failed
        finally:
            if not future.done():  # the caller left the loop: stop the request and let it settle
                self._cancel()
                concurrent.futures.wait([future])

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        self.start()
        while not self._buffer:
            if self._result.done():  # finished or failed: take what is left, then settle
                self._buffer.extend(self._channel.take_nowait())
                if not self._buffer:
                    self._closed = True
                    self._result.result()  # raises the request's error or cancellation
                    raise StopAsyncIteration
                break
            drain = asyncio.ensure_future(self._channel.drain())
            done, _ = await asyncio.wait({drain, self._result}, return_when=asyncio.FIRST_COMPLETED)
            if drain in done:
                self._buffer.extend(drain.result())
            else:
                drain.cancel()
        item = self._buffer.popleft()
        if item is _END:
            self._closed = True
            await self._result  # surface an error that ended the stream
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop the request (at its next step if running) and wait until it is settled."""
        if self._closed and (self._result is None or self._result.done()):
            return
        self._closed = True
        self._cancel()
        if self._result is not None:
            try:
                await self._result
            except (asyncio.CancelledError, Exception):
                pass

    async def __aenter__(self) -> TokenStream:
        self.start()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self.aclose()
