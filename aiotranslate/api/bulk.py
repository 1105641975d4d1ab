"""Bulk inference over an iterable of examples: results in input order, batches in parallel.

`BulkResults` is what `translate_iterable`, `score_iterable` and `generate_iterable` return. It
reads the input in chunks (`read_size` examples, or tokens), turns each chunk into the requests of
one *_batch call (`build`: split by max_batch_size, sorted by length), and keeps at most
`inter_threads + 1` chunks in flight (`ahead`), so every worker has work while the oldest chunk is
delivered, and memory stays constant on endless input. Admission applies backpressure as for any
request.

    async for result in translator.translate_iterable(source): ...   # inside a coroutine
    for result in translator.translate_iterable(source): ...         # a script, no event loop

Either source may be a sync or (with `async for`) an async iterable. Leaving early cancels the
requests in flight: at once with `aclose()` / `close()` or the context managers, else when the
results object is dropped (a `break` out of a `for` over the call itself).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ..runtime import Request
from .batching import gather_in_order

READ_CHUNKS = 16  # a chunk holds this many sub-batches (CTranslate2 reads max_batch_size * 16)

Build = Callable[..., tuple[list[Request], list[list[int]]]]
_MISSING = object()


def read_size(max_batch_size: int, read_batch_size: int = 0) -> int:
    """Examples (or tokens) per chunk: read_batch_size, or max_batch_size x 16 when it is 0."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if read_batch_size < 0:
        raise ValueError(f"read_batch_size must be >= 0, got {read_batch_size}")
    return read_batch_size or (max_batch_size * READ_CHUNKS if max_batch_size > 1 else 1)


def ahead(engine) -> int:
    """Chunks in flight: one per worker, and the one being delivered."""
    return engine.inter_threads + 1


def example_size(example: Any, batch_type: str) -> int:
    """What an example counts toward a chunk: 1, or its tokens (words for a text)."""
    if batch_type == "examples":
        return 1
    return len(example.split()) if isinstance(example, str) else len(example)


class _InFlight:
    """The chunks submitted and not yet delivered; cancelling them is thread-safe."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.chunks: collections.deque[_Chunk] = collections.deque()

    def cancel(self) -> None:
        while self.chunks:
            chunk = self.chunks.popleft()
            if chunk.task is not None and not chunk.task.done():
                try:
                    chunk.task.get_loop().call_soon_threadsafe(chunk.task.cancel)
                except RuntimeError:  # its loop is closed: the task will never run again
                    pass
            for r in chunk.requests:
                self.engine._cancel(r)


class _Chunk:
    __slots__ = ("requests", "batches", "task")

    def __init__(self, requests: list[Request], batches: list[list[int]]) -> None:
        for r in requests:
            # Each sub-batch is already a batch of max_batch_size: a key of its own keeps the
            # scheduler from merging it with its siblings, so they run on several workers at once.
            # (Keys are tuples whose first item the worker reads: the id goes last.)
            r.key = (*r.key, ("bulk", r.id))
        self.requests = requests
        self.batches = batches
        self.task: asyncio.Task | None = None  # async path: the requests' results, gathered

    def done(self) -> bool:
        if self.task is not None:
            return self.task.done()
        return all(r.future.done() for r in self.requests)

    def results(self) -> list:
        """Sync path: wait for every request (raising the first failure), in input order."""
        return gather_in_order([r.future.result() for r in self.requests], self.batches)


class BulkResults:
    """Results of one bulk call, in input order: an async iterator, an iterator, and a (sync or
    async) context manager that stops the work when left."""

    def __init__(self, engine, build: Build, sources: list, *, chunk_size: int, batch_type: str) -> None:
        build(*([] for _ in sources))  # bad options fail here, not at the first result
        self._engine = engine
        self._build = build
        self._sources = sources
        self._chunk_size = chunk_size
        self._batch_type = batch_type
        self._inflight = _InFlight(engine)
        self._ahead = ahead(engine)
        self._aiter: AsyncIterator | None = None
        self._iter: Iterator | None = None

    # -- async ------------------------------------------------------------------------------

    def __aiter__(self) -> BulkResults:
        return self

    async def __anext__(self) -> Any:
        if self._aiter is None:
            if self._iter is not None:
                raise RuntimeError("these results are already being read with `for`")
            chunks = _chunks_async(self._sources, self._chunk_size, self._batch_type)
            self._aiter = _deliver_async(self._engine, self._build, chunks, self._inflight, self._ahead)
        return await self._aiter.__anext__()

    def cancel(self) -> None:
        """Cancel the requests in flight (from any thread); the iteration then raises."""
        self._inflight.cancel()

    async def aclose(self) -> None:
        """Cancel the requests in flight and end the iteration."""
        self._inflight.cancel()
        if self._aiter is not None:
            await self._aiter.aclose()

    async def __aenter__(self) -> BulkResults:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # -- sync -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        if self._iter is None:
            if self._aiter is not None:
                raise RuntimeError("these results are already being read with `async for`")
            _check_no_running_loop()
            chunks = _chunks_sync(self._sources, self._chunk_size, self._batch_type)
            self._iter = _deliver_sync(self._engine, self._build, chunks, self._inflight, self._ahead)
        return next(self._iter)

    def close(self) -> None:
        """Cancel the requests in flight and end the iteration."""
        self._inflight.cancel()
        if self._iter is not None:
            self._iter.close()

    def __enter__(self) -> BulkResults:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # Dropped before the end (a `break`): nobody will read the rest, stop computing it.
        inflight = getattr(self, "_inflight", None)
        if inflight is not None:
            inflight.cancel()


def _check_no_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("inside a coroutine, read bulk results with `async for` (a `for` would block the event loop)")


# -- reading chunks (module functions: the readers must not keep the results object alive) -------


def _chunks_sync(sources: list, chunk_size: int, batch_type: str) -> Iterator[list[list]]:
    if any(hasattr(s, "__aiter__") and not hasattr(s, "__iter__") for s in sources):
        raise TypeError("an async iterable input needs `async for` over the results")
    iterators = [iter(s) for s in sources]
    while columns := _read_sync(iterators, chunk_size, batch_type):
        yield columns


async def _chunks_async(sources: list, chunk_size: int, batch_type: str):
    iterators = [s.__aiter__() if hasattr(s, "__aiter__") else iter(s) for s in sources]
    while (columns := await _read_async(iterators, chunk_size, batch_type))[0]:
        yield columns


def _read_sync(iterators: list[Iterator], chunk_size: int, batch_type: str) -> list[list] | None:
    columns: list[list] = [[] for _ in iterators]
    size = 0
    while size < chunk_size:
        row = [next(it, _MISSING) for it in iterators]
        if _row_ends(row):
            break
        size += _append_row(columns, row, batch_type)
    return columns if columns[0] else None


async def _read_async(iterators: list, chunk_size: int, batch_type: str) -> list[list]:
    columns: list[list] = [[] for _ in iterators]
    size = 0
    while size < chunk_size:
        row = [await _anext(it) for it in iterators]
        if _row_ends(row):
            break
        size += _append_row(columns, row, batch_type)
    return columns


async def _anext(iterator) -> Any:
    if hasattr(iterator, "__anext__"):
        try:
            return await iterator.__anext__()
        except StopAsyncIteration:
            return _MISSING
    return next(iterator, _MISSING)


def _row_ends(row: list) -> bool:
    ended = [x is _MISSING for x in row]
    if any(ended) and not all(ended):
        raise ValueError("the input iterables do not have the same length")
    return all(ended)


def _append_row(columns: list[list], row: list, batch_type: str) -> int:
    for column, x in zip(columns, row):
        column.append(x)
    return example_size(row[0], batch_type)


# -- delivering results ---------------------------------------------------------------------------


def _deliver_sync(engine, build: Build, chunks: Iterable[list[list]], inflight: _InFlight, max_chunks: int) -> Iterator:
    """Submit chunk after chunk (blocking while the queue is full), results of the oldest first."""
    try:
        for columns in chunks:
            chunk = _Chunk(*build(*columns))
            inflight.chunks.append(chunk)  # before admission: a failed submit still cancels the rest
            for r in chunk.requests:
                engine._submit(r)
            while inflight.chunks and (len(inflight.chunks) >= max_chunks or inflight.chunks[0].done()):
                yield from inflight.chunks[0].results()
                inflight.chunks.popleft()
        while inflight.chunks:
            yield from inflight.chunks[0].results()
            inflight.chunks.popleft()
    finally:
        inflight.cancel()


async def _deliver_async(engine, build: Build, chunks, inflight: _InFlight, max_chunks: int):
    """The same on the event loop: each chunk is one task admitting (with backpressure) and
    awaiting its requests; a failed or cancelled chunk cancels the others."""
    try:
        async for columns in chunks:
            chunk = _Chunk(*build(*columns))
            chunk.task = asyncio.ensure_future(engine._run_all(chunk.requests))
            chunk.task.add_done_callback(_retrieve)
            inflight.chunks.append(chunk)
            while inflight.chunks and (len(inflight.chunks) >= max_chunks or inflight.chunks[0].done()):
                for result in await _chunk_results(inflight.chunks[0]):
                    yield result
                inflight.chunks.popleft()
        while inflight.chunks:
            for result in await _chunk_results(inflight.chunks[0]):
                yield result
            inflight.chunks.popleft()
    finally:
        inflight.cancel()


async def _chunk_results(chunk: _Chunk) -> list:
    return gather_in_order(await chunk.task, chunk.batches)


def _retrieve(task: asyncio.Task) -> None:
    """Mark a chunk's failure as seen: the iteration re-raises it, or was left before it."""
    if not task.cancelled():
        task.exception()


__all__ = ["BulkResults", "ahead", "read_size"]
