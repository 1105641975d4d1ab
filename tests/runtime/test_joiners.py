"""Continuous batching in the runtime: which queued requests may join a running batch, and how the
pool accounts for them. A fake run_batch decodes 'step by step' and admits joiners between steps;
synchronisation uses events, never sleeps for correctness."""

import threading

from aiotranslate.runtime import AdmissionQueue, BatchLimits, Request, WorkerPool


def test_take_stops_at_the_first_other_key_and_within_the_limit():
    queue = AdmissionQueue(0)
    a1, a2, a3, b, a4 = (Request(key, examples, num_tokens=3) for key, examples in
                         [("a", [1, 2]), ("a", [3]), ("a", [4, 5]), ("b", [6]), ("a", [7])])
    for r in (a1, a2, a3, b, a4):
        queue.put_nowait(r)
    assert queue.take("a", max_examples=3) == [a1, a2]  # a3 would make 5 examples
    assert queue.take("b") == []  # a3 is ahead of b: it is served first
    assert queue.take("a") == [a3]  # not a4: b stands before it (fairness)
    assert queue.take("b") == [b]
    assert queue.take("a") == [a4] and queue.snapshot() == (0, 0, 0)


def test_taking_makes_room_for_blocked_producers():
    queue = AdmissionQueue(1)
    queue.put_nowait(Request("a", [1]))
    admitted = threading.Event()

    def produce():
        queue.put(Request("a", [2]))
        admitted.set()

    thread = threading.Thread(target=produce)
    thread.start()
    assert len(queue.take("a")) == 1
    assert admitted.wait(5)
    thread.join()


class SteppingModel:
    """Each example is a step count. A batch steps all its unfinished requests together; before each
    step it admits joiners; a request is completed with its step count as soon as it has run it."""

    def __init__(self):
        self.pool: WorkerPool | None = None
        self.first_step = threading.Event()
        self.release = threading.Event()  # the first step waits for it: tests queue joiners meanwhile
        self.steps_per_batch: list[list[tuple[int, ...]]] = []  # the request ids of every step

    def run_batch(self, context, requests):
        done: dict[int, int] = {}
        steps = []
        while True:
            self.pool.take_joiners(requests)  # drops the completed requests, appends the joiners
            running = list(requests)
            assert all(not r.future.done() for r in running)
            if not running:
                break
            steps.append(tuple(r.id for r in running))
            if len(steps) == 1:
                self.first_step.set()
                assert self.release.wait(10)
            for r in running:
                done[r.id] = done.get(r.id, 0) + 1
                if r.should_stop():
                    r.finish_stopped()
                elif done[r.id] >= r.examples[0]:
                    r.set_result(done[r.id])
        self.steps_per_batch.append(steps)


def make_pool(max_examples=0):
    model = SteppingModel()
    queue = AdmissionQueue(0)
    model.pool = WorkerPool(queue, [dict], model.run_batch, BatchLimits(max_examples=max_examples, batch_window=0))
    return model, queue, model.pool


def test_joiners_run_in_the_running_batch_and_leave_when_done():
    model, queue, pool = make_pool()
    long, short = Request("k", [50]), Request("k", [3])
    queue.put(long)
    assert model.first_step.wait(5)
    queue.put(short)  # queued while the long request runs
    model.release.set()
    assert short.future.result(5) == 3
    assert not long.future.done() or long.future.result() == 50  # the short one did not wait for it
    assert long.future.result(5) == 50
    pool.close()
    (steps,) = model.steps_per_batch  # one batch, which the short request joined and left
    with_short = [s for s in steps if short.id in s]
    assert len(with_short) == 3 and steps.index(with_short[0]) == 1
    stats = pool.statistics()
    assert stats["num_examples_run"] == 2 and stats["num_batches_run"] == 1 and pool.num_active_batches == 0


def test_the_batch_limit_bounds_the_joiners_and_cancelled_ones_never_start():
    model, queue, pool = make_pool(max_examples=2)
    first = Request("k", [4])
    queue.put(first)
    assert model.first_step.wait(5)
    cancelled, joiner, waiting, other = Request("k", [2]), Request("k", [2]), Request("k", [1]), Request("j", [1])
    for r in (cancelled, joiner, waiting, other):
        queue.put(r)
    cancelled.cancel()
    model.release.set()
    assert [r.future.result(5) for r in (first, joiner, waiting, other)] == [4, 2, 1, 1]
    assert cancelled.future.cancelled()
    pool.close()
    first_batch = model.steps_per_batch[0]
    assert max(len(s) for s in first_batch) == 2  # never more than max_examples running
    assert all(other.id not in s for s in first_batch)  # another key never joins
