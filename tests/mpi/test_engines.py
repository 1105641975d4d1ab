"""`Translator`, `Generator` and `Encoder` with tensor_parallel=True, as an application runs them: the
same script on every rank, the constructor serving rank 0 on the others until rank 0 closes, then
SystemExit(0). Rank 0's results equal a single-process engine's, with several workers at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from ranks import RANK, SIZE

from aiotranslate import Encoder, Generator, MpiInfo, Translator

SOURCES = [[5, 9, 14, 3, 0], [7, 7, 0], [31, 2, 40, 11, 6, 0], [8, 0]]
PROMPTS = [[1, 5, 7, 9, 11, 4], [1, 3], [1, 8, 8, 20]]


def parallel(cls, path: Path, **kwargs):
    """The engine on rank 0; on the other ranks, serve it until rank 0 closes it, and return None."""
    if RANK == 0:
        return cls(path, tensor_parallel=True, intra_threads=1, **kwargs)
    with pytest.raises(SystemExit) as stop:
        cls(path, tensor_parallel=True, intra_threads=1, **kwargs)
    assert stop.value.code == 0
    return None


def test_mpi_info_tells_the_rank():
    assert (MpiInfo.get_world_size(), MpiInfo.get_cur_rank()) == (SIZE, RANK)
    assert (MpiInfo.getNRanks(), MpiInfo.getCurRank()) == (SIZE, RANK)
    assert MpiInfo.getLocalRank() == MpiInfo.get_local_rank() == RANK  # one machine


async def test_translator_with_two_workers_matches_a_single_process(model_dirs):
    translator = parallel(Translator, model_dirs["marian"], inter_threads=2)
    if translator is None:
        return
    options = [dict(beam_size=1), dict(beam_size=3, num_hypotheses=2, return_scores=True)]
    async with translator:
        results = await asyncio.gather(
            *(translator.translate_batch(SOURCES, max_decoding_length=8, **o) for o in options * 2)
        )
        scores = await translator.score_batch(SOURCES[:2], [[4, 6], [8]])
        stats = translator.statistics()
    with Translator(model_dirs["marian"], intra_threads=1) as reference:
        expected = [reference.translate_batch(SOURCES, max_decoding_length=8, **o) for o in options]
        expected_scores = await reference.score_batch(SOURCES[:2], [[4, 6], [8]])
        expected = [await e for e in expected]
    assert [[r.hypotheses for r in rs] for rs in results] == [[r.hypotheses for r in rs] for rs in expected * 2]
    for ours, ref in zip(scores, expected_scores):
        np.testing.assert_allclose(ours.log_probs, ref.log_probs, atol=1e-5)
    assert stats["tensor_parallel_size"] == SIZE and stats["collective_seconds"] > 0


def test_generator_serves_concurrent_requests_and_survives_a_bad_one(model_dirs):
    """Greedy and seeded sampling from two workers; a prompt past GPT-2's positions fails that request
    with the model's own error on every rank, and the engine goes on."""
    generator = parallel(Generator, model_dirs["gpt2"], inter_threads=2)
    if generator is None:
        return
    requests = [dict(max_length=6), dict(max_length=6, sampling_topk=5, seed=3, num_hypotheses=2)]
    with generator:
        futures = [generator.submit_generate_batch(PROMPTS, **r) for r in requests]
        with pytest.raises(ValueError, match="past the model's 32"):
            generator.submit_generate_batch([[1] * 40], max_length=2).result(timeout=60)
        results = [f.result(timeout=60) for f in futures]
    with Generator(model_dirs["gpt2"], intra_threads=1) as reference:
        expected = [reference.submit_generate_batch(PROMPTS, **r).result() for r in requests]
    assert [[r.sequences_ids for r in rs] for rs in results] == [[r.sequences_ids for r in rs] for rs in expected]


async def test_encoder_matches_a_single_process(model_dirs):
    encoder = parallel(Encoder, model_dirs["bert"])
    if encoder is None:
        return
    batch = [[2, 40, 17, 9, 3], [2, 5, 3]]
    async with encoder:
        output = await encoder.forward_batch(batch)
    async with Encoder(model_dirs["bert"], intra_threads=1) as reference:
        expected = await reference.forward_batch(batch)
    np.testing.assert_allclose(output.last_hidden_state, expected.last_hidden_state, atol=1e-5)
    np.testing.assert_allclose(output.pooler_output, expected.pooler_output, atol=1e-5)


async def test_a_stream_left_early_stops_in_step_on_every_rank(model_dirs):
    """Leaving a stream stops its sequence at the next step on rank 0 (the decoding loop's own
    decision); the other ranks follow its state, and the next request decodes as a single process."""
    generator = parallel(Generator, model_dirs["llama"])
    if generator is None:
        return
    async with generator:
        async with generator.generate_tokens(PROMPTS[0], max_length=20, min_length=20) as steps:
            async for _ in steps:
                break
        results = await generator.generate_batch(PROMPTS, max_length=6)
    with Generator(model_dirs["llama"], intra_threads=1) as reference:
        expected = await reference.generate_batch(PROMPTS, max_length=6)
    assert [r.sequences_ids for r in results] == [r.sequences_ids for r in expected]
