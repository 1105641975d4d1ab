"""translate_iterable / score_iterable / generate_iterable on tiny models: results in input order and
equal to the *_batch calls, sub-batches running in parallel, sync and async inputs, `for` without an
event loop, a bounded read-ahead on endless input, and leaving early cancelling the work."""

import asyncio
import itertools
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aiotranslate import Generator, Translator
from aiotranslate.api.bulk import ahead, read_size

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_models import tiny_models  # noqa: E402
from tokenizer_fixtures import make_sentences  # noqa: E402

SENTENCES = make_sentences(20, seed=11)
GREEDY = dict(beam_size=1, max_decoding_length=8)
LONG = dict(beam_size=1, max_decoding_length=200, min_decoding_length=200)  # a while on the tiny model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def translator(models):
    with Translator(models.translator, inter_threads=2, intra_threads=1) as t:
        yield t


async def settles(condition, timeout=10.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.001)
    return True


async def agen(items):
    for x in items:
        await asyncio.sleep(0)
        yield x


async def test_results_come_in_input_order_and_equal_translate_batch(translator):
    expected = await translator.translate_batch(SENTENCES, **GREEDY)
    got = [r async for r in translator.translate_iterable(SENTENCES, max_batch_size=2, **GREEDY)]
    assert got == expected
    by_tokens = [r async for r in translator.translate_iterable(iter(SENTENCES), max_batch_size=40,
                                                                 batch_type="tokens", **GREEDY)]  # fmt: skip
    assert by_tokens == expected


async def test_async_inputs_and_a_target_prefix(translator):
    prefixes = [None if i % 2 else translator.tokenizer.tokenize([s], target=True, add_special_tokens=False)[0][:2]
                for i, s in enumerate(SENTENCES)]  # fmt: skip
    expected = await translator.translate_batch(SENTENCES, prefixes, **GREEDY)
    got = [r async for r in translator.translate_iterable(agen(SENTENCES), agen(prefixes), max_batch_size=3, **GREEDY)]
    assert got == expected


async def test_plain_for_without_an_event_loop(translator):
    """A script's `for`: the submit path on a thread with no loop; inside a coroutine it is refused."""
    expected = await translator.translate_batch(SENTENCES, **GREEDY)
    got = await asyncio.to_thread(lambda: list(translator.translate_iterable(SENTENCES, max_batch_size=4, **GREEDY)))
    assert got == expected
    with pytest.raises(RuntimeError, match="async for"):
        next(iter(translator.translate_iterable(SENTENCES, **GREEDY)))
    with pytest.raises(TypeError, match="async for"):
        await asyncio.to_thread(lambda: list(translator.translate_iterable(agen(SENTENCES))))


async def test_sub_batches_run_in_parallel_on_two_workers(translator):
    seen = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            seen.append(translator.num_active_batches)
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        results = [r async for r in translator.translate_iterable(SENTENCES, max_batch_size=1, beam_size=1,
                                                                   max_decoding_length=40, min_decoding_length=40)]
    finally:
        stop.set()
        sampler.join()
    assert len(results) == len(SENTENCES)
    assert max(seen) == 2


async def test_read_ahead_is_bounded_on_endless_input(translator):
    pulled = itertools.count()
    endless = (SENTENCES[next(pulled) % len(SENTENCES)] for _ in itertools.count())
    async with translator.translate_iterable(endless, max_batch_size=2, **GREEDY) as results:
        got = [r async for r in take(results, 5)]
    assert len(got) == 5
    assert next(pulled) <= (ahead(translator) + 1) * read_size(2)


async def take(results, n):
    async for r in results:
        yield r
        n -= 1
        if n == 0:
            return


async def test_breaking_out_cancels_the_batches_in_flight(translator):
    # An earlier test's cancelled batches are counted when they stop: let them, before counting.
    assert await settles(lambda: translator.num_active_batches == 0 and translator.num_queued_batches == 0)
    before = translator.statistics()["num_examples_run"]
    async for _ in translator.translate_iterable(SENTENCES * 3, max_batch_size=1, **LONG):
        break
    assert await settles(lambda: translator.num_active_batches == 0 and translator.num_queued_batches == 0)
    # Only the chunks in flight ran (those past the first stopped at their next step).
    assert translator.statistics()["num_examples_run"] - before <= ahead(translator) * read_size(1)
    assert len(await translator.translate_batch(SENTENCES[:2], **GREEDY)) == 2  # the pool still serves


def wait_idle(engine) -> None:
    end = time.monotonic() + 10
    while engine.num_active_batches or engine.num_queued_batches:
        assert time.monotonic() < end
        time.sleep(0.001)


def test_leaving_a_plain_for_cancels_the_batches_in_flight(translator):
    wait_idle(translator)  # an earlier test's cancelled batches are counted when they stop
    before = translator.statistics()["num_examples_run"]
    with translator.translate_iterable(SENTENCES * 3, max_batch_size=1, **LONG) as results:
        next(results)
    wait_idle(translator)
    assert translator.statistics()["num_examples_run"] - before <= ahead(translator) * read_size(1)
    assert len(translator.submit_translate_batch(SENTENCES[:1], **GREEDY).result(30)) == 1


async def test_errors_surface_and_options_are_checked_at_call_time(translator):
    with pytest.raises(TypeError, match="unexpected option"):
        translator.translate_iterable(SENTENCES, beam_sise=2)
    with pytest.raises(ValueError, match="max_batch_size"):
        translator.translate_iterable(SENTENCES, max_batch_size=0)
    with pytest.raises(ValueError, match="same length"):
        [r async for r in translator.score_iterable(SENTENCES, SENTENCES[:-1])]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        [r async for r in translator.translate_iterable([[1, 2], [10**6]], max_batch_size=1, **GREEDY)]
    assert len(await translator.translate_batch(SENTENCES[:1], **GREEDY)) == 1


async def test_translator_score_iterable_equals_score_batch(translator):
    targets = SENTENCES[::-1]
    expected = await translator.score_batch(SENTENCES, targets)
    got = [r async for r in translator.score_iterable(SENTENCES, agen(targets), max_batch_size=3)]
    assert_same_scores(got, expected)


async def test_generator_iterables_equal_the_batch_calls(models):
    prompts = make_sentences(9, seed=4)
    async with Generator(models.generator, inter_threads=2, intra_threads=1) as generator:
        expected = await generator.generate_batch(prompts, max_length=6)
        got = [r async for r in generator.generate_iterable(agen(prompts), max_batch_size=2, max_length=6)]
        assert got == expected
        scores = await generator.score_batch(prompts)
        assert_same_scores(await asyncio.to_thread(lambda: list(generator.score_iterable(prompts, max_batch_size=2))),
                           scores)  # fmt: skip


def assert_same_scores(got, expected):
    """Equal tokens, log-probs equal up to float rounding (other batches pad differently)."""
    assert [r.tokens for r in got] == [r.tokens for r in expected]
    for r, e in zip(got, expected):
        np.testing.assert_allclose(r.log_probs, e.log_probs, atol=1e-5)
