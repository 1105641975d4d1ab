"""Continuous batching and beam-search streams through the async API, on tiny random GPT-2, Llama
(Generator) and Marian (Translator) models with one worker: a request queued while another decodes
joins it at the next step, leaves it as soon as it is done, and gets exactly what it gets alone.

The model's decode is wrapped to count its calls and rows and to hold the worker at a chosen call,
so that requests are queued while a batch is known to be running: events, not sleeps."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

from aiotranslate import Generator, Translator

sys.path.insert(0, str(Path(__file__).parents[1] / "decoding"))
from hf_reference import tiny_decoder, tiny_seq2seq  # noqa: E402

PROMPTS = [[1, 5, 7, 9], [1, 3], [1, 8, 8, 4, 4, 30], [1, 44, 12]]
SOURCES = [[5, 7, 9, 11, 3], [20, 21], [33, 8, 8, 40], [12, 3, 50]]


class Case:
    """One engine, its examples, and its option names."""

    def __init__(self, engine):
        self.engine = engine
        self.translator = isinstance(engine, Translator)
        self.examples = SOURCES if self.translator else PROMPTS

    def options(self, length: int, min_length: int = 0, **extra) -> dict:
        if self.translator:
            extra = {"beam_size": 1, "max_decoding_length": length, "min_decoding_length": min_length, **extra}
        else:
            extra = {"max_length": length, "min_length": min_length, "include_prompt_in_result": False, **extra}
        return {"return_scores": True, **extra}  # as streams have them: all these requests may share a batch

    def nowait(self, i: int, **options) -> asyncio.Future:
        """Admit example i at once (no waiting on the loop before it is queued)."""
        method = self.engine.translate_batch_nowait if self.translator else self.engine.generate_batch_nowait
        return method([self.examples[i]], **options)

    async def alone(self, i: int, **options):
        return (await self.nowait(i, **options))[0]

    def stream(self, i: int, **options):
        return self.engine.generate_tokens(self.examples[i], **options)

    def ids(self, result) -> list[list[int]]:
        return result.hypotheses if self.translator else result.sequences_ids


@pytest.fixture(scope="module", params=["gpt2", "llama", "marian"])
def case(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "marian":
        tiny_seq2seq("marian").save_pretrained(root)
        engine = Translator(root, inter_threads=1, intra_threads=1)
    else:
        tiny_decoder(request.param).save_pretrained(root)
        engine = Generator(root, inter_threads=1, intra_threads=1)
    with engine:
        yield Case(engine)


class Hold:
    """A decode call at which the worker waits until released."""

    def __init__(self):
        self.reached = threading.Event()
        self.released = threading.Event()

    async def wait(self) -> None:
        assert await asyncio.to_thread(self.reached.wait, 30), "the worker never reached the held call"

    def release(self) -> None:
        self.released.set()


class Gate:
    """The model's decode, counting its calls (rows per call) and holding the worker at chosen calls."""

    def __init__(self, model):
        self.rows: list[int] = []
        self.holds: dict[int, Hold] = {}
        self._decode = model.decode

    def __call__(self, state, ids, lengths=None, **kwargs):
        self.rows.append(len(ids))
        hold = self.holds.get(len(self.rows))
        if hold is not None:
            hold.reached.set()
            assert hold.released.wait(30)
        return self._decode(state, ids, lengths, **kwargs)

    def hold(self, call: int) -> Hold:
        """Hold the worker at decode call number `call` (counting from the first)."""
        hold = self.holds[call] = Hold()
        return hold


@pytest.fixture
def gate(case, monkeypatch):
    gate = Gate(case.engine._loaded.model)
    monkeypatch.setattr(case.engine._loaded.model, "decode", gate)
    yield gate
    for hold in gate.holds.values():
        hold.release()


async def until(condition, what: str) -> None:
    """Poll the loop until condition() holds (the pool's counters change just after results)."""
    for _ in range(10000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(what)


async def idle(engine) -> None:
    await until(lambda: engine.num_active_batches == 0, "num_active_batches did not return to 0")


async def test_a_short_request_joins_a_long_one_and_leaves_first(case, gate):
    long_options, short_options = case.options(60, 60), case.options(3)
    long_alone = await case.alone(0, **long_options)
    short_alone = await case.alone(1, **short_options)

    start = len(gate.rows)
    held = gate.hold(start + 3)  # the long request's prefill and two steps
    long = case.nowait(0, **long_options)
    await held.wait()
    short = case.nowait(1, **short_options)  # queued while the long one runs
    order = []
    long.add_done_callback(lambda _: order.append("long"))
    short.add_done_callback(lambda _: order.append("short"))
    held.release()
    results = await asyncio.gather(long, short)

    assert order == ["short", "long"]
    assert case.ids(results[0][0]) == case.ids(long_alone) and case.ids(results[1][0]) == case.ids(short_alone)
    rows = gate.rows[start:]
    # prefill, 2 steps, held step, the short prefill, steps of both, then the long one alone
    assert rows[:4] == [1, 1, 1, 1] and 2 in rows, rows
    after = rows[len(rows) - rows[::-1].index(2) :]  # the calls after the short request left
    assert len(after) > 40 and set(after) == {1}, rows
    await idle(case.engine)


@pytest.mark.parametrize("sampling", [False, True])
async def test_joined_requests_get_what_they_get_alone(case, gate, sampling):
    extra = {"sampling_topk": 0, "sampling_temperature": 0.9} if sampling else {}
    # Requests that differ in lengths and seed, but not in how tokens are chosen, share a batch.
    jobs = [(0, case.options(40, 40, seed=1, **extra)), (1, case.options(6, seed=2, **extra)),
            (2, case.options(12, 12, seed=3, **extra)), (3, case.options(9, seed=4, **extra)),
            (1, case.options(20, 20, seed=5, **extra))]  # fmt: skip
    alone = [await case.alone(i, **o) for i, o in jobs]

    start = len(gate.rows)
    held = gate.hold(start + 2)
    first = case.nowait(jobs[0][0], **jobs[0][1])
    await held.wait()
    rest = [case.nowait(i, **o) for i, o in jobs[1:]]
    held.release()
    joined = [r[0] for r in await asyncio.gather(first, *rest)]

    assert [case.ids(r) for r in joined] == [case.ids(r) for r in alone]
    for got, want in zip(joined, alone):
        assert got.scores == pytest.approx(want.scores, abs=1e-4)
    assert max(gate.rows[start:]) == len(jobs)  # they all ran in one batch
    await idle(case.engine)


async def test_cancelling_a_joined_stream_leaves_the_batch_running(case, gate):
    options = case.options(60, 60)
    long_alone = await case.alone(0, **options)
    start = len(gate.rows)
    held = gate.hold(start + 2)  # the long request's first step
    long = case.nowait(0, **options)
    await held.wait()
    joined = gate.hold(start + 4)  # the first step with the stream's row, after its prefill
    async with case.stream(1, **options) as steps:
        await until(lambda: case.engine.num_queued_batches == 1, "the stream was never queued")
        held.release()
        await joined.wait()
        first = await steps.__anext__()  # reported before that decode call
        assert first.step == 0
        closing = asyncio.ensure_future(steps.aclose())
        await asyncio.sleep(0)  # aclose cancels the request before its first await
        joined.release()
        await closing
    assert case.ids((await long)[0]) == case.ids(long_alone)
    rows = gate.rows[start:]
    assert rows[:4] == [1, 1, 1, 2] and set(rows[4:]) == {1}, rows  # the stream's row left at once
    await idle(case.engine)


async def test_a_joined_request_past_its_deadline_stops_alone(case, gate):
    options = case.options(60, 60)
    long_alone = await case.alone(0, **options)
    start = len(gate.rows)
    held = gate.hold(start + 2)
    long = case.nowait(0, **options)
    await held.wait()
    joined = gate.hold(start + 4)  # the first step with the joined row
    late = case.nowait(1, timeout=0.5, **options)
    held.release()
    await joined.wait()
    await asyncio.sleep(0.6)  # the worker is held: the deadline passes while the request runs
    joined.release()
    with pytest.raises(TimeoutError):
        await late
    assert case.ids((await long)[0]) == case.ids(long_alone)
    rows = gate.rows[start:]
    assert rows[:4] == [1, 1, 1, 2] and set(rows[4:]) == {1}, rows
    await idle(case.engine)


async def test_beam_stream_is_the_best_hypothesis(case):
    end_ids = case.engine._loaded.special.end
    for i in range(len(case.examples)):
        options = case.options(16, beam_size=3)
        (result,) = await case.nowait(i, **options)
        async with case.stream(i, **options) as steps:
            streamed = [s async for s in steps]
        best = case.ids(result)[0]
        tokens = [s.token_id for s in streamed]
        assert tokens == best or (tokens[:-1] == best and tokens[-1] in end_ids)  # the end token is streamed
        assert [s.step for s in streamed] == list(range(len(tokens)))
        assert streamed[-1].is_last and not any(s.is_last for s in streamed[:-1])


async def test_leaving_a_beam_stream_stops_the_work(case, gate):
    start = len(gate.rows)
    held = gate.hold(start + 4)  # prefill and three steps
    async with case.stream(2, **case.options(80, 80, beam_size=3)) as steps:
        await held.wait()
        closing = asyncio.ensure_future(steps.aclose())
        await asyncio.sleep(0)  # aclose cancels the request before its first await
        held.release()
        await closing
    assert gate.rows[start:] == [1, 3, 3, 3], "decoding went on after the stream was left"
    await idle(case.engine)
