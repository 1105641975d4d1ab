"""unload_model / load_model / model_is_loaded (CTranslate2's semantics) and the admission limit by
queued tokens (max_queued_tokens)."""

import asyncio
import gc
import sys
import threading
import weakref
from pathlib import Path

import pytest

from aiotranslate import Encoder, Generator, QueueFull, Translator
from aiotranslate.api.engine import Engine
from aiotranslate.api.model_engine import ModelNotLoaded
from aiotranslate.runtime import BatchLimits, Request

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_models import tiny_models  # noqa: E402
from tokenizer_fixtures import make_sentences  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])  # the lifecycle has no loop-specific code
SENTENCES = make_sentences(4, seed=12)
GREEDY = dict(beam_size=1, max_decoding_length=8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory)


async def test_unload_releases_the_weights_and_load_restores_them(models):
    async with Translator(models.translator, inter_threads=2, intra_threads=1) as translator:
        expected = await translator.translate_batch(SENTENCES, **GREEDY)
        model = weakref.ref(translator._loaded.model)
        translator.unload_model()
        gc.collect()
        assert not translator.model_is_loaded and model() is None
        with pytest.raises(ModelNotLoaded, match="load_model"):
            await translator.translate_batch(SENTENCES, **GREEDY)
        with pytest.raises(ModelNotLoaded):
            translator.submit_translate_batch(SENTENCES, **GREEDY)
        translator.unload_model()  # a no-op when unloaded
        translator.load_model()
        assert translator.model_is_loaded
        assert await translator.translate_batch(SENTENCES, **GREEDY) == expected


async def test_unload_to_cpu_keeps_the_model_for_a_fast_reload(models):
    async with Generator(models.generator, intra_threads=1) as generator:
        expected = await generator.generate_batch(SENTENCES, max_length=5)
        model = generator._loaded.model
        generator.unload_model(to_cpu=True)
        assert not generator.model_is_loaded
        generator.load_model()
        assert generator._loaded.model is model  # not read from disk again
        assert await generator.generate_batch(SENTENCES, max_length=5) == expected
        generator.unload_model(to_cpu=True)
        generator.load_model(keep_cache=False)
        generator.unload_model()
        assert generator._cpu_copy is None


async def test_unload_waits_for_the_running_batch(models):
    async with Translator(models.translator, intra_threads=1) as translator:
        running = asyncio.ensure_future(translator.translate_batch(
            SENTENCES, beam_size=1, max_decoding_length=150, min_decoding_length=150))  # fmt: skip
        while translator.num_active_batches == 0:
            await asyncio.sleep(0.001)
        unloaded = asyncio.ensure_future(asyncio.to_thread(translator.unload_model))
        results = await running  # the request admitted before the unload completes normally
        assert len(results[0].hypotheses[0]) == 150
        await unloaded
        assert not translator.model_is_loaded
        translator.load_model()


async def test_encoder_lifecycle(models):
    async with Encoder(models.encoder, intra_threads=1) as encoder:
        expected = await encoder.embed(SENTENCES)
        encoder.unload_model()
        with pytest.raises(ModelNotLoaded):
            await encoder.embed(SENTENCES)
        encoder.load_model()
        assert (await encoder.embed(SENTENCES) == expected).all()


class BlockingEngine(Engine):
    """Runs one batch at a time; each waits until `release` is set."""

    def __init__(self, **kwargs):
        self.release = threading.Event()
        self.started = threading.Event()
        super().__init__(**kwargs)

    def _run_batch(self, context, requests):
        self.started.set()
        self.release.wait(10)
        for r in requests:
            r.set_result([r.num_tokens])


def tokens(n: int, key: str = "a") -> Request:
    return Request(key, [n], num_tokens=n)


async def test_max_queued_tokens_bounds_admission():
    engine = BlockingEngine(intra_threads=1, max_queued_batches=-1, max_queued_tokens=10,
                            limits=BatchLimits(max_examples=1))
    try:
        busy = engine._submit(tokens(1, "busy"))
        await asyncio.to_thread(engine.started.wait, 5)
        engine._submit(tokens(6), block=False)
        with pytest.raises(QueueFull, match="max_queued_tokens"):
            engine._submit(tokens(5), block=False)
        engine._submit(tokens(4), block=False)  # exactly at the limit
        waiting = asyncio.ensure_future(engine._run(tokens(3)))
        await asyncio.sleep(0.05)
        assert not waiting.done() and engine.statistics()["num_queued_tokens"] == 10
        engine.release.set()
        assert await asyncio.wait_for(waiting, 5) == [3]  # admitted once the queue drained
        assert busy.result(5) == [1]
    finally:
        engine.release.set()
        engine.close()


async def test_a_request_larger_than_the_limit_runs_alone():
    engine = BlockingEngine(intra_threads=1, max_queued_tokens=10)
    engine.release.set()
    try:
        assert await asyncio.wait_for(engine._run(tokens(50)), 5) == [50]
    finally:
        engine.close()
    with pytest.raises(ValueError, match="max_queued_tokens"):
        BlockingEngine(intra_threads=1, max_queued_tokens=-1)


async def test_engines_take_max_queued_tokens(models):
    async with Translator(models.translator, intra_threads=1, max_queued_tokens=500) as translator:
        assert translator._queue.max_tokens == 500
        assert len(await translator.translate_batch(SENTENCES, **GREEDY)) == len(SENTENCES)
