"""What `Translator`, `Generator` and `Encoder` share: threads, the queue and pool, the lifecycle,
and the three ways to submit a request (await, concurrent future, nowait).

The async methods only wait: the work runs on the pool's worker threads, results come back through
`asyncio.wrap_future` (call_soon_threadsafe under the hood), and cancelling the awaiting task
cancels the request (removed if queued, stopped at its next decoding step if running).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import enum
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .. import _native
from ..errors import EngineClosed
from ..runtime import AdmissionQueue, BatchLimits, Request, WorkerPool
from ..runtime.device import CpuPlace, CudaPlace
from ..runtime.mpi_driver import Group
from .batching import gather_in_order, keep_apart, step_pusher
from .streaming import TokenStream

_buffers = _native.load("_buffers")


class EngineState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


def available_cores() -> int:
    """Cores this process may use: OMP_NUM_THREADS when set (honoured as the budget), else affinity."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(inter_threads: int, intra_threads: int) -> tuple[int, int]:
    """(inter, intra): intra_threads=0 splits the cores between the workers, never oversubscribing."""
    if inter_threads < 1:
        raise ValueError(f"inter_threads must be >= 1, got {inter_threads}")
    if intra_threads < 0:
        raise ValueError(f"intra_threads must be >= 0, got {intra_threads}")
    if intra_threads == 0:
        intra_threads = max(1, available_cores() // inter_threads)
    return inter_threads, intra_threads


def resolve_queue_size(max_queued_batches: int, num_workers: int, max_examples: int = 0) -> int:
    """CTranslate2's rule, 0 -> 4 batches per worker and -1 -> unbounded, in queued requests; the
    default also holds at least one full batch (max_examples) of them, since queued single-example
    requests merge into one batch: a tighter bound keeps concurrent callers waiting for room while a
    worker starts on a batch of a few (many small requests then run at a fraction of one batch's
    throughput)."""
    if max_queued_batches < -1:
        raise ValueError(f"max_queued_batches must be >= -1, got {max_queued_batches}")
    if max_queued_batches == 0:
        return max(4 * num_workers, max_examples)
    return max_queued_batches


class Engine:
    """The threaded engine behind one public class: one copy of the weights per device, `inter_threads`
    workers per device (each running kernels with `intra_threads` threads, or on its own CUDA
    stream), one bounded admission queue.

    Subclasses provide `_run_batch(context, requests)` (completing every request) and build
    requests; `context` is the worker's `WorkerContext`, whose `place` says which device (and so which
    copy of the model) the worker runs on. `device_indices`: the GPUs, `inter_threads` workers for
    each entry (an index may repeat); empty: the workers run on the CPU.
    """

    def __init__(
        self,
        *,
        device_indices: Sequence[int] = (),
        inter_threads: int = 1,
        intra_threads: int = 0,
        max_queued_batches: int = 0,
        max_queued_tokens: int = 0,
        limits: BatchLimits = BatchLimits(),
        name: str = "aiotranslate",
        parallel: Group | None = None,
    ) -> None:
        self._parallel = parallel  # rank 0 of a tensor-parallel group: each worker takes an endpoint
        self.inter_threads, self.intra_threads = resolve_threads(inter_threads, intra_threads)
        if max_queued_tokens < 0:
            raise ValueError(f"max_queued_tokens must be >= 0 (0: no limit), got {max_queued_tokens}")
        devices = [index for index in (device_indices or [None]) for _ in range(self.inter_threads)]
        self._queue = AdmissionQueue(
            resolve_queue_size(max_queued_batches, len(devices), limits.max_examples), max_queued_tokens
        )
        contexts = [self._context_factory(i, device) for i, device in enumerate(devices)]
        self._pool = WorkerPool(self._queue, contexts, self._run_in_place, limits, name=name)
        self._state = EngineState.OPEN
        if parallel is not None:
            atexit.register(self.close, True)  # a script ending without close still releases the other ranks

    def _context_factory(self, index: int, device_index: int | None) -> Callable[[], Any]:
        """What each worker builds on its own thread: its place (the CPU, or GPU `device_index` and
        the worker's own stream), and numpy's allocator for its arrays: the buffer cache, which hands
        a step's freed blocks to the next step instead of fresh pages (native/buffer_cache.h)."""

        def make() -> WorkerContext:
            if _buffers is not None:
                _buffers.install()  # for this thread's context only
            if self._parallel is not None:
                self._parallel.bind(index)  # this worker's communicators, for the model's collectives
            place = CpuPlace() if device_index is None else CudaPlace(device_index)
            return WorkerContext(index, self.intra_threads, place)

        return make

    def _run_in_place(self, context: WorkerContext, requests: list[Request]) -> None:
        """A batch on the worker's device and stream, synchronised before the worker moves on."""
        with context.place.active():
            self._run_batch(context, requests)

    def _run_batch(self, context: WorkerContext, requests: list[Request]) -> None:
        raise NotImplementedError

    # -- submission ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is not EngineState.OPEN:
            raise EngineClosed(f"{type(self).__name__} is closed")

    def _admit(self, request: Request) -> None:
        """Called before a request is queued: may refuse it (an unloaded model) or track it until
        its future is done; a request that then fails to enter the queue is cancelled."""

    async def _run(self, request: Request) -> Any:
        """Admit (waiting for room: backpressure) and await the result; cancellable throughout."""
        self._check_open()
        self._admit(request)
        try:
            await self._queue.aput(request)
        except BaseException:
            request.cancel()
            raise
        return await self._wait(request)

    async def _wait(self, request: Request) -> Any:
        """The result of an admitted request; cancelling the caller cancels the request."""
        try:
            return await asyncio.wrap_future(request.future)
        except asyncio.CancelledError:
            self._cancel(request)
            raise

    async def _run_all(self, requests: list[Request]) -> list[Any]:
        """Run sub-batches concurrently (they may land on different workers), results in order;
        if one fails or the caller is cancelled, the others are cancelled too."""
        if len(requests) == 1:
            return [await self._run(requests[0])]
        tasks = [asyncio.ensure_future(self._run(r)) for r in keep_apart(requests)]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            for r in requests:
                self._cancel(r)
            raise

    def _submit(self, request: Request, block: bool = True) -> concurrent.futures.Future:
        """Admit from a plain thread (blocking while the queue is full, or raising QueueFull
        without block) and return the request's future."""
        self._check_open()
        self._admit(request)
        try:
            if block:
                self._queue.put(request)
            else:
                self._queue.put_nowait(request)
        except BaseException:
            request.cancel()
            raise
        return request.future

    def _submit_all(self, requests: list[Request], batches: list[list[int]]) -> concurrent.futures.Future:
        """Admit every sub-batch from a plain thread; one Future of the outputs in input order."""
        combined: concurrent.futures.Future = concurrent.futures.Future()
        futures = [self._submit(r) for r in keep_apart(requests)]
        remaining = [len(futures)]

        def done(_):
            remaining[0] -= 1
            if remaining[0] or not combined.set_running_or_notify_cancel():
                return
            failed = next((f for f in futures if f.cancelled() or f.exception() is not None), None)
            if failed is None:
                combined.set_result(gather_in_order([f.result() for f in futures], batches))
            else:
                combined.set_exception(
                    concurrent.futures.CancelledError() if failed.cancelled() else failed.exception()
                )

        for f in futures:
            f.add_done_callback(done)
        return combined

    def _submit_one(self, request: Request) -> concurrent.futures.Future:
        """Admit a request of one output from a plain thread: a Future of that output itself, whose
        cancellation cancels the request."""
        outer: concurrent.futures.Future = concurrent.futures.Future()
        inner = self._submit(request)

        def settle(f: concurrent.futures.Future) -> None:
            if f.cancelled():
                outer.cancel()
            elif outer.set_running_or_notify_cancel():
                if f.exception() is not None:
                    outer.set_exception(f.exception())
                else:
                    outer.set_result(f.result()[0])

        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        inner.add_done_callback(settle)
        return outer

    def _nowait_all(self, requests: list[Request], batches: list[list[int]]) -> asyncio.Future:
        """Admit every sub-batch at once or none (QueueFull); an awaitable of the ordered outputs."""
        admitted = []
        try:
            for r in keep_apart(requests):
                self._submit(r, block=False)
                admitted.append(r)
        except BaseException:
            for r in admitted:
                self._cancel(r)
            raise

        async def results():
            try:
                outputs = await asyncio.gather(*(asyncio.wrap_future(r.future) for r in requests))
            except BaseException:
                for r in requests:
                    self._cancel(r)
                raise
            return gather_in_order(list(outputs), batches)

        return asyncio.ensure_future(results())

    def _stream(self, tokenizer, build: Callable[[Callable], list[Request]], *, nowait: bool = False) -> TokenStream:
        """A TokenStream over the one request `build(on_step)` makes when the stream starts
        (admitted then, waiting for room), or with nowait right now (QueueFull if there is none).
        Without nowait, a plain `for` over the stream runs it from this thread instead."""
        holder: list[Request] = []

        def start(channel):
            holder.extend(build(step_pusher(channel.push, tokenizer)))
            if nowait:
                self._submit(holder[0], block=False)
            return settle(channel)

        def start_blocking(put):
            holder.extend(build(step_pusher(put, tokenizer)))
            return self._submit(holder[0])

        async def settle(channel):
            try:
                return await (self._wait(holder[0]) if nowait else self._run(holder[0]))
            finally:
                channel.end()

        stream = TokenStream(start, lambda: [self._cancel(r) for r in holder], None if nowait else start_blocking)
        if nowait:
            stream.start()
        return stream

    def _cancel(self, request: Request) -> None:
        request.cancel()
        if self._queue.remove(request):
            request.finish_stopped()

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self, cancel: bool = False) -> None:
        """Stop accepting work, finish (or with cancel=True, cancel) what is queued and running,
        and join the worker threads. Idempotent."""
        if self._state is EngineState.CLOSED:
            return
        self._state = EngineState.CLOSED
        self._pool.close(cancel=cancel)
        self._release_model()
        if self._parallel is not None:
            self._parallel.close()  # the workers are joined: the other ranks may stop
            atexit.unregister(self.close)

    def _release_model(self) -> None:
        """Called by `close` once the workers are joined: free what the model holds (GPU copies)."""

    async def aclose(self, cancel: bool = False) -> None:
        """`close` without blocking the event loop (the join runs in a helper thread)."""
        await asyncio.get_running_loop().run_in_executor(None, self.close, cancel)

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self.aclose(cancel=exc_type is not None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)

    def __del__(self) -> None:
        if getattr(self, "_state", EngineState.CLOSED) is EngineState.OPEN:
            warnings.warn(
                f"{type(self).__name__} was never closed; use `async with` or call close()",
                ResourceWarning,
                stacklevel=1,
            )
            self._pool.close(cancel=True, timeout=0)

    # -- introspection ------------------------------------------------------------------------

    @property
    def num_queued_batches(self) -> int:
        return len(self._queue)

    @property
    def num_active_batches(self) -> int:
        return self._pool.num_active_batches

    def statistics(self) -> dict:
        """Queue depth (batches, examples, tokens), active batches, batch sizes, latency p50/p90/p99."""
        stats = self._pool.statistics()
        if self._parallel is not None:
            stats.update(self._parallel.statistics())
        return stats


class WorkerContext:
    """What one worker owns: its index, intra-op thread count and place (the CPU, or a GPU and the
    worker's stream; `place.device_index` picks that device's copy of the model)."""

    __slots__ = ("index", "n_threads", "place")

    def __init__(self, index: int, n_threads: int, place: CpuPlace | CudaPlace) -> None:
        self.index = index
        self.n_threads = n_threads
        self.place = place
