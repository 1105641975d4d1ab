"""The text-level twins a web app and a threaded script need: `translate_nowait`, `submit_translate`,
`generate_tokens_nowait` (admitted at once or QueueFull, before anything is awaited), and the end
tokens a stream finishes with."""

import asyncio
import sys
from pathlib import Path

import pytest

from aiotranslate import Generator, QueueFull, Translator

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_models import tiny_models  # noqa: E402
from tokenizer_fixtures import make_sentences  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])  # no loop-specific code here
SENTENCES = make_sentences(4, seed=3)
LONG = dict(max_length=4000, min_length=4000)  # seconds of decoding on the tiny model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory)


async def test_translate_twins_give_what_translate_gives(models):
    async with Translator(models.translator, intra_threads=1) as translator:
        expected = await translator.translate(SENTENCES, beam_size=1, max_decoding_length=8)
        assert await translator.translate_nowait(SENTENCES, beam_size=1, max_decoding_length=8) == expected
        future = translator.submit_translate(SENTENCES, beam_size=1, max_decoding_length=8)
        assert await asyncio.wrap_future(future) == expected
        with pytest.raises(TypeError, match="list of texts"):
            translator.translate_nowait(SENTENCES[0])


async def test_stream_nowait_is_admitted_at_once_or_refused(models):
    async with Generator(models.generator, intra_threads=1, max_queued_batches=1) as generator:
        async with generator.generate_tokens("the frog", **LONG) as running:
            await anext(running)  # the only worker is busy with it
            # sampled: it cannot join the running greedy batch (continuous batching), so it waits
            queued = generator.generate_tokens_nowait("the stone", sampling_topk=5, **LONG)
            assert generator.num_queued_batches == 1
            with pytest.raises(QueueFull):
                generator.generate_tokens_nowait("the river", **LONG)
            with pytest.raises(TypeError, match="unexpected option"):
                generator.generate_tokens_nowait("the river", max_lenght=3)
            await queued.aclose()
            assert generator.num_queued_batches == 0


async def test_stream_ends_with_an_end_token_or_at_max_length(models):
    async with Generator(models.generator, intra_threads=1) as generator:
        assert generator.end_token_ids == (2,)
        for seed in range(20):  # sampled continuations: some end, some run to max_length
            async with generator.generate_tokens("the frog", max_length=6, sampling_topk=0, seed=seed) as steps:
                last = [s async for s in steps][-1]
            assert last.is_last
            if last.token_id in generator.end_token_ids:
                assert last.text == ""
            else:
                assert last.step == 5
