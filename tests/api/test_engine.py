"""The async engine surface on a fake model: await, futures, nowait, streams, cancellation,
close. The fake 'decodes' n steps per example, checking the stop flag between steps."""

import asyncio
import threading
import time

import pytest

from aiotranslate.api.engine import Engine, resolve_queue_size, resolve_threads
from aiotranslate.api.streaming import TokenStream
from aiotranslate.errors import EngineClosed, QueueFull
from aiotranslate.runtime import BatchLimits, Request


async def settles(condition, timeout=5.0):
    """Wait (polling the loop) until condition() holds: the pool updates its counters just after
    a batch's results are delivered."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.001)
    return True


class CountingEngine(Engine):
    """Each example is a step count; each step pushes (example, step) to the stream and sleeps
    `step_time`; the result is the list of counts. An example of -1 is a bad input."""

    def __init__(self, step_time=0.001, **kwargs):
        self.step_time = step_time
        self.steps_run = 0
        self.started = threading.Event()
        self.finished = threading.Event()
        super().__init__(**kwargs)

    def _run_batch(self, context, requests):
        for r in requests:
            if -1 in r.examples:
                raise ValueError("negative step count")
        for r in requests:
            for i, n in enumerate(r.examples):
                for step in range(n):
                    self.started.set()
                    if r.should_stop():
                        r.finish_stopped()
                        break
                    self.steps_run += 1
                    if r.on_step:
                        r.on_step((i, step))
                    time.sleep(self.step_time)
            if r.on_step:
                r.on_step(None)
            r.set_result(list(r.examples))
        self.finished.set()

    async def count(self, examples, timeout=None):
        return await self._run(Request("count", examples, timeout=timeout))

    def stream(self, n):
        request = Request("count", [n])

        async def start(channel):
            request.on_step = lambda step: channel.end() if step is None else channel.push(step)
            return await self._run(request)

        return TokenStream(start, lambda: self._cancel(request))


def test_thread_and_queue_defaults():
    assert resolve_threads(2, 3) == (2, 3)
    assert resolve_threads(1, 0)[1] >= 1
    assert resolve_queue_size(0, 2) == 8 and resolve_queue_size(-1, 2) == -1
    assert resolve_queue_size(0, 2, max_examples=64) == 64  # a full batch of single requests
    with pytest.raises(ValueError):
        resolve_threads(0, 1)


def test_intra_threads_default_honours_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert resolve_threads(2, 0) == (2, 3)
    assert resolve_threads(8, 0) == (8, 1)


async def test_concurrent_awaits_get_their_own_results():
    async with CountingEngine(inter_threads=2, intra_threads=1, step_time=0) as engine:
        results = await asyncio.gather(*(engine.count([i % 3, 1]) for i in range(20)))
        assert results == [[i % 3, 1] for i in range(20)]


async def test_bad_request_fails_alone():
    async with CountingEngine(intra_threads=1, step_time=0) as engine:
        good, bad = engine.count([1]), engine.count([-1])
        results = await asyncio.gather(good, bad, return_exceptions=True)
        assert results[0] == [1] and isinstance(results[1], ValueError)
        assert await engine.count([2]) == [2]


async def test_cancel_running_coroutine_frees_the_worker():
    async with CountingEngine(intra_threads=1, step_time=0.01) as engine:
        task = asyncio.create_task(engine.count([10_000]))
        await asyncio.to_thread(engine.started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(engine.count([1]), 5) == [1]
        assert await settles(lambda: engine.num_active_batches == 0)
        assert engine.steps_run < 1000


async def test_deadline_raises_timeout_error():
    async with CountingEngine(intra_threads=1, step_time=0.01) as engine:
        with pytest.raises(TimeoutError):
            await engine.count([10_000], timeout=0.05)


async def test_nowait_raises_queue_full_when_backlogged():
    engine = CountingEngine(intra_threads=1, max_queued_batches=1, step_time=0.01)
    blocker = asyncio.create_task(engine.count([10_000]))
    await asyncio.to_thread(engine.started.wait, 5)
    engine._submit(Request("count", [1]), block=False)
    with pytest.raises(QueueFull):
        engine._submit(Request("count", [1]), block=False)
    blocker.cancel()
    await engine.aclose(cancel=True)


async def test_stream_yields_steps_then_ends():
    async with CountingEngine(intra_threads=1, step_time=0) as engine:
        async with engine.stream(5) as steps:
            assert [s async for s in steps] == [(0, i) for i in range(5)]


async def test_leaving_a_stream_early_stops_the_work():
    async with CountingEngine(intra_threads=1, step_time=0.005) as engine:
        async with engine.stream(100_000) as steps:
            async for step in steps:
                if step[1] == 3:
                    break
        assert await settles(lambda: engine.num_active_batches == 0)
        assert engine.steps_run < 1000
        assert await engine.count([1]) == [1]


async def test_slow_consumer_never_stalls_the_worker():
    async with CountingEngine(intra_threads=1, step_time=0) as engine:
        async with engine.stream(2000) as steps:
            first = await steps.__anext__()
            # Not reading: the worker must still run to the end.
            assert await asyncio.to_thread(engine.finished.wait, 10)
            assert engine.steps_run == 2000
            rest = [s async for s in steps]
        assert [first] + rest == [(0, i) for i in range(2000)]


def test_futures_from_plain_threads_and_closed_engine():
    engine = CountingEngine(inter_threads=2, intra_threads=1, step_time=0)
    futures = []

    def caller(k):
        futures.append(engine._submit(Request("count", [k])))

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(f.result(5)[0] for f in futures) == list(range(8))
    engine.close()
    with pytest.raises(EngineClosed):
        engine._submit(Request("count", [1]))


def test_unclosed_engine_warns():
    engine = CountingEngine(intra_threads=1)
    with pytest.warns(ResourceWarning):
        engine.__del__()
    engine.close()
