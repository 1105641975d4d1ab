"""The runtime contract with a fake model: batching, backpressure, cancellation, deadlines,
exception isolation and shutdown. Synchronisation uses events, never sleeps for correctness."""

import asyncio
import concurrent.futures
import threading

import pytest

from aiotranslate.errors import EngineClosed, QueueFull
from aiotranslate.runtime import AdmissionQueue, BatchLimits, Request, WorkerPool


class FakeModel:
    """run_batch doubles every example; 'bad' raises; 'gate' blocks until released; 'steps' runs
    step by step, checking the request's stop flag between steps like decoding does."""

    def __init__(self):
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.step_started = threading.Event()

    def run_batch(self, context, requests):
        self.batches.append([r.id for r in requests])
        for r in requests:
            if "gate" in r.examples:
                self.entered.set()
                assert self.gate.wait(10)
            if "bad" in r.examples:
                raise ValueError("bad example")
        for r in requests:
            if "steps" in r.examples:
                for _ in range(1000):
                    self.step_started.set()
                    if r.should_stop():
                        r.finish_stopped()
                        break
                    threading.Event().wait(0.001)
                else:
                    r.set_result("ran to the end")
            else:
                r.set_result([x * 2 for x in r.examples])


def make_pool(model, workers=1, maxsize=4, **limits):
    queue = AdmissionQueue(maxsize)
    pool = WorkerPool(queue, [dict] * workers, model.run_batch, BatchLimits(**limits))
    return queue, pool


def test_results_in_order_and_pool_survives_errors():
    model = FakeModel()
    queue, pool = make_pool(model, maxsize=0)
    good = [Request("k", [i, i + 1]) for i in range(5)]
    bad = Request("k", ["bad"])
    for r in good[:2] + [bad] + good[2:]:
        queue.put(r)
    assert [r.future.result(5) for r in good] == [[2 * i, 2 * i + 2] for i in range(5)]
    with pytest.raises(ValueError, match="bad example"):
        bad.future.result(5)
    after = Request("k", [7])
    queue.put(after)
    assert after.future.result(5) == [14]
    pool.close()


def test_failed_batch_is_rerun_per_request_so_only_the_culprit_fails():
    model = FakeModel()
    queue, pool = make_pool(model, maxsize=0, batch_window=0.0)
    blocker = Request("k", ["gate"])
    queue.put(blocker)
    assert model.entered.wait(5)
    a, bad, b = Request("k", [1]), Request("k", ["bad"]), Request("k", [2])
    for r in (a, bad, b):
        queue.put(r)
    model.gate.set()
    assert a.future.result(5) == [2] and b.future.result(5) == [4]
    with pytest.raises(ValueError):
        bad.future.result(5)
    assert [a.id, bad.id, b.id] in model.batches  # they did run as one batch first
    pool.close()


def test_compatible_requests_merge_into_one_batch_within_limits():
    model = FakeModel()
    queue, pool = make_pool(model, maxsize=0, max_examples=4, batch_window=0.0)
    blocker = Request("k", ["gate"])
    queue.put(blocker)
    assert model.entered.wait(5)
    reqs = [Request("k", [1, 2]), Request("other", [3]), Request("k", [4]), Request("k", [5, 6])]
    for r in reqs:
        queue.put(r)
    model.gate.set()
    for r in reqs:
        r.future.result(5)
    pool.close()
    # The oldest request leads; same-key ones join while <= 4 examples; the rest wait their turn.
    assert model.batches[1:] == [[reqs[0].id, reqs[2].id], [reqs[1].id], [reqs[3].id]]


def test_put_nowait_raises_queue_full_and_blocking_put_waits():
    model = FakeModel()
    queue, pool = make_pool(model, maxsize=1)
    queue.put(Request("k", ["gate"]))
    assert model.entered.wait(5)
    queue.put_nowait(Request("k", [1]))
    with pytest.raises(QueueFull):
        queue.put_nowait(Request("k", [2]))
    with pytest.raises(QueueFull):
        queue.put(Request("k", [2]), timeout=0.01)
    late = Request("k", [3])
    putter = threading.Thread(target=queue.put, args=(late,))
    putter.start()
    model.gate.set()
    putter.join(5)
    assert late.future.result(5) == [6]
    pool.close()


def test_cancelled_and_expired_requests_never_reach_the_model():
    model = FakeModel()
    queue, pool = make_pool(model, maxsize=0)
    queue.put(Request("k", ["gate"]))
    assert model.entered.wait(5)
    cancelled, expired, kept = Request("a", [1]), Request("b", [2], timeout=1e-9), Request("c", [3])
    for r in (cancelled, expired, kept):
        queue.put(r)
    cancelled.cancel()
    model.gate.set()
    assert kept.future.result(5) == [6]
    assert cancelled.future.cancelled()
    with pytest.raises(TimeoutError):
        expired.future.result(5)
    assert all(cancelled.id not in b and expired.id not in b for b in model.batches)
    pool.close()


def test_cancel_running_request_stops_at_next_step_and_frees_the_worker():
    model = FakeModel()
    queue, pool = make_pool(model)
    running = Request("k", ["steps"])
    queue.put(running)
    assert model.step_started.wait(5)
    running.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        running.future.result(5)
    nxt = Request("k", [1])
    queue.put(nxt)
    assert nxt.future.result(5) == [2]
    assert pool.num_active_batches == 0
    pool.close()


def test_close_drains_by_default_and_cancel_drops_the_queue():
    model = FakeModel()
    queue, pool = make_pool(model, maxsize=0)
    queued = [Request("k", [i]) for i in range(3)]
    for r in queued:
        queue.put(r)
    pool.close()
    assert [r.future.result(0) for r in queued] == [[0], [2], [4]]
    with pytest.raises(EngineClosed):
        queue.put_nowait(Request("k", [1]))

    model = FakeModel()
    queue, pool = make_pool(model, maxsize=0)
    running = Request("k", ["steps"])
    queue.put(running)
    assert model.step_started.wait(5)
    waiting = Request("k", [1])
    queue.put(waiting)
    pool.close(cancel=True, timeout=5)
    assert waiting.future.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        running.future.result(0)


def test_statistics_count_batches_and_latency():
    model = FakeModel()
    queue, pool = make_pool(model, maxsize=0)
    reqs = [Request("k", [i]) for i in range(4)]
    for r in reqs:
        queue.put(r)
    for r in reqs:
        r.future.result(5)
    pool.close()
    stats = pool.statistics()
    assert stats["num_examples_run"] == 4 and stats["num_active_batches"] == 0
    assert stats["latency_p99_s"] >= stats["latency_p50_s"] > 0


async def test_aput_waits_without_blocking_the_loop_and_resumes_when_room_frees():
    model = FakeModel()
    queue, pool = make_pool(model, maxsize=1)
    await queue.aput(Request("k", ["gate"]))
    await asyncio.to_thread(model.entered.wait, 5)
    await queue.aput(Request("k", [1]))
    third = Request("k", [2])
    put_task = asyncio.create_task(queue.aput(third))
    await asyncio.sleep(0)  # the loop keeps running while put_task waits for room
    assert not put_task.done()
    model.gate.set()
    await asyncio.wait_for(put_task, 5)
    assert await asyncio.wait_for(asyncio.wrap_future(third.future), 5) == [4]
    pool.close()


async def test_cancelled_aput_waiter_passes_its_wakeup_on():
    model = FakeModel()
    queue, pool = make_pool(model, maxsize=1)
    await queue.aput(Request("k", ["gate"]))
    await asyncio.to_thread(model.entered.wait, 5)
    await queue.aput(Request("k", [1]))
    first = asyncio.create_task(queue.aput(Request("k", [2])))
    second_req = Request("k", [3])
    second = asyncio.create_task(queue.aput(second_req))
    await asyncio.sleep(0)
    first.cancel()
    model.gate.set()
    await asyncio.wait_for(second, 5)
    assert await asyncio.wait_for(asyncio.wrap_future(second_req.future), 5) == [6]
    with pytest.raises(asyncio.CancelledError):
        await first
    pool.close()
