"""The replica pool: `inter_threads` worker threads that take batches from one admission queue.

Each worker owns a context made once on its own thread (its intra-op thread count, scratch, and on
GPU its CUDA stream); the model weights behind the contexts are shared read-only. A worker runs
`run_batch(context, requests)`, which must complete every request it is given. The pool guarantees
the rest of the contract: cancelled or expired requests never reach `run_batch`; an exception
fails only the request that caused it (a failed batch is re-run request by request to find it);
a worker never dies of a bad request.

Continuous batching: while `run_batch` decodes, it may call `take_joiners(requests)` between
steps: the requests it has completed leave its `requests` list (accounted for at once), and
compatible requests waiting in the queue are started and appended to it, so that the pool accounts
for them (and re-runs them alone if the batch fails) like the others. A batch that keeps taking
joiners may run indefinitely; it holds only its live requests.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .admission import AdmissionQueue
from .request import Request

RunBatch = Callable[[Any, list[Request]], None]


@dataclass(frozen=True)
class BatchLimits:
    """How workers form batches from the queue (0 = no limit)."""

    max_examples: int = 0
    max_tokens: int = 0
    batch_window: float = 0.001  # seconds a worker waits for compatible requests to join


class WorkerPool:
    def __init__(
        self,
        queue: AdmissionQueue,
        contexts: list[Callable[[], Any]],
        run_batch: RunBatch,
        limits: BatchLimits = BatchLimits(),
        name: str = "aiotranslate",
    ) -> None:
        """Start one worker per entry of `contexts` (each a factory called on its worker)."""
        self._queue = queue
        self._run_batch = run_batch
        self._limits = limits
        self._lock = threading.Lock()
        self._active: set[Request] = set()
        self._active_batches = 0
        self._batches_run = 0
        self._examples_run = 0
        self._batch_sizes: collections.deque[int] = collections.deque(maxlen=1024)
        self._latencies: collections.deque[float] = collections.deque(maxlen=1024)
        self._threads = [
            threading.Thread(target=self._work, args=(factory,), name=f"{name}-worker-{i}", daemon=True)
            for i, factory in enumerate(contexts)
        ]
        for t in self._threads:
            t.start()

    @property
    def num_workers(self) -> int:
        return len(self._threads)

    @property
    def num_active_batches(self) -> int:
        return self._active_batches

    # -- the worker loop --------------------------------------------------------------------

    def _work(self, make_context: Callable[[], Any]) -> None:
        context = make_context()
        limits = self._limits
        while True:
            batch = self._queue.get_batch(limits.max_examples, limits.max_tokens, limits.batch_window)
            if batch is None:
                return
            live = [r for r in batch if self._start(r)]
            if not live:
                continue
            with self._lock:
                self._active_batches += 1
                self._active.update(live)
                self._batch_sizes.append(sum(len(r) for r in live))  # as formed from the queue
            try:
                self._run_isolated(context, live)
            finally:
                with self._lock:
                    self._active_batches -= 1
                    self._batches_run += 1

    def take_joiners(self, batch: list[Request]) -> list[Request]:
        """Between two decoding steps of `batch`: drop its completed requests from it, then start the
        queued requests that may join it (same key, ahead of any other key) within max_examples
        running examples (max_tokens bounds the first batch only), append them and return them."""
        with self._lock:
            self._retire([r for r in batch if r.future.done()])
        batch[:] = [r for r in batch if not r.future.done()]  # only this worker completes them
        room = self._limits.max_examples - sum(len(r) for r in batch)
        if self._limits.max_examples and room <= 0:
            return []
        taken = self._queue.take(batch[0].key, max(room, 0)) if batch else []
        live = [r for r in taken if self._start(r)]
        if live:
            with self._lock:
                self._active.update(live)
            batch.extend(live)
        return live

    def _retire(self, requests: list[Request]) -> None:
        """Account for completed requests (lock held); each once, however often it is passed."""
        now = time.monotonic()
        for r in requests:
            if r in self._active:
                self._active.discard(r)
                self._examples_run += len(r)
                self._latencies.append((r.finished_at or now) - r.submitted_at)

    @staticmethod
    def _start(request: Request) -> bool:
        """Mark a request running, or complete it here if it was cancelled or expired in the queue."""
        if request.should_stop():
            request.finish_stopped()
            return False
        if not request.future.set_running_or_notify_cancel():
            return False
        request.started_at = time.monotonic()
        return True

    def _run_isolated(self, context: Any, requests: list[Request]) -> None:
        try:
            self._run_batch(context, requests)
        except BaseException as exc:  # noqa: BLE001 - a worker must survive anything a request does
            pending = [r for r in requests if not r.future.done()]
            if len(pending) > 1:
                for r in pending:  # find the culprit: the others still get their results
                    self._run_isolated(context, [r])
            else:
                for r in pending:
                    r.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt / SystemExit: after failing the requests, stop
        for r in requests:
            if not r.future.done():
                r.set_exception(RuntimeError("internal error: the batch left this request without a result"))
        with self._lock:
            self._retire(requests)

    # -- lifecycle and introspection --------------------------------------------------------

    def close(self, cancel: bool = False, timeout: float | None = None) -> None:
        """Stop: finish queued and running work, or with cancel drop the queue and stop running
        requests at their next step; then join the workers."""
        for r in self._queue.close(drain=not cancel):
            r.finish_stopped()
        if cancel:
            with self._lock:
                running = list(self._active)
            for r in running:
                r.cancel()
        for t in self._threads:
            t.join(timeout)

    def statistics(self) -> dict:
        queued, queued_examples, queued_tokens = self._queue.snapshot()
        with self._lock:
            sizes = list(self._batch_sizes)
            lat = np.array(self._latencies, dtype=np.float64)
            stats = {
                "num_workers": self.num_workers,
                "num_queued_batches": queued,
                "num_queued_examples": queued_examples,
                "num_queued_tokens": queued_tokens,
                "num_active_batches": self._active_batches,
                "num_batches_run": self._batches_run,
                "num_examples_run": self._examples_run,
                "mean_batch_size": float(np.mean(sizes)) if sizes else 0.0,
                "max_batch_size": max(sizes, default=0),
            }
        for p in (50, 90, 99):
            stats[f"latency_p{p}_s"] = float(np.percentile(lat, p)) if lat.size else 0.0
        return stats
