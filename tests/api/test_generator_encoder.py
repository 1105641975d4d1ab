"""Generator and Encoder end to end on tiny random models: the async surface reproduces
transformers (generate, logits, hidden states) and merges concurrent requests."""

import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import aiotranslate
from aiotranslate import Encoder, Generator

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).parents[1] / "tokenizers"))
from encoder_fixtures import build_encoder, hf_encode, load_hf_encoder  # noqa: E402
from hf_fixtures import tiny_gpt2  # noqa: E402
from tokenizer_fixtures import build_bpe_dir, make_sentences  # noqa: E402

PROMPTS = [[1, 5, 9, 11], [1, 7], [1, 3, 3, 3, 8, 20], [1, 40, 2, 6]]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    root = build_bpe_dir(tmp_path_factory.mktemp("gpt2"))
    vocab = json.loads((root / "tokenizer.json").read_text())["model"]["vocab"]
    hf = tiny_gpt2(root, vocab_size=len(vocab), n_positions=64, bos_token_id=0, eos_token_id=2)
    return root, hf


@pytest.fixture(scope="module")
def generator(gpt2_dir):
    with Generator(gpt2_dir[0], inter_threads=2, intra_threads=1) as g:
        yield g


def hf_greedy(hf, prompt, max_new_tokens):
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                          pad_token_id=2)
    new = out[0].tolist()[len(prompt):]
    return new[: new.index(2)] if 2 in new else new


async def test_generate_batch_matches_transformers_greedy(generator, gpt2_dir):
    results = await generator.generate_batch(PROMPTS, max_length=10, include_prompt_in_result=False)
    for prompt, r in zip(PROMPTS, results):
        assert r.sequences_ids[0] == hf_greedy(gpt2_dir[1], prompt, 10)
        assert r.sequences[0] == generator.tokenizer.ids_to_tokens([r.sequences_ids[0]])[0]
    # The prompt is returned with the result (CTranslate2's include_prompt_in_result), its first
    # token too unless it is the BOS (id 0 here); neither adds to the score's log-probability.
    options = dict(return_scores=True, return_end_token=True)
    with_prompt = await generator.generate_batch(PROMPTS[:1], max_length=10 + 3, **options)
    alone = await generator.generate_batch(PROMPTS[:1], max_length=10, include_prompt_in_result=False, **options)
    assert with_prompt[0].sequences_ids[0] == PROMPTS[0] + alone[0].sequences_ids[0]
    bos_led = await generator.generate_batch([[0] + PROMPTS[0][1:]], max_length=10 + 3)
    assert bos_led[0].sequences_ids[0][:3] == PROMPTS[0][1:]
    new = len(alone[0].sequences_ids[0])  # the start token is not counted, the 3 prompt tokens after it are
    assert with_prompt[0].scores[0] * (3 + new) == pytest.approx(alone[0].scores[0] * new, rel=1e-5)


async def test_concurrent_generations_equal_one_batch_and_stream(generator):
    batched = await generator.generate_batch(PROMPTS, max_length=8, beam_size=2, return_scores=True)
    singles = await asyncio.gather(*(generator.generate_batch([p], max_length=8, beam_size=2, return_scores=True)
                                     for p in PROMPTS))
    assert [s[0].sequences_ids for s in singles] == [b.sequences_ids for b in batched]
    greedy = await generator.generate_batch([PROMPTS[2]], max_length=8, include_prompt_in_result=False)
    async with generator.generate_tokens(PROMPTS[2], max_length=8, include_prompt_in_result=False) as steps:
        ids = [s.token_id async for s in steps]
    assert [i for i in ids if i != 2] == greedy[0].sequences_ids[0]


async def test_concurrent_greedy_calls_with_and_without_the_prompt(generator):
    """include_prompt_in_result is a per-row option of continuous batching (calls that differ in it
    alone may decode in one batch): each concurrent call returns what it asked for."""
    options = dict(max_length=8, return_scores=True)
    with_prompt, without = await asyncio.gather(
        generator.generate_batch(PROMPTS[:2], max_length=8 + 3, return_scores=True),
        generator.generate_batch(PROMPTS[:2], include_prompt_in_result=False, **options),
    )
    alone = await generator.generate_batch(PROMPTS[:2], include_prompt_in_result=False, **options)
    assert [r.sequences_ids for r in without] == [r.sequences_ids for r in alone]
    assert with_prompt[0].sequences_ids[0][: len(PROMPTS[0])] == PROMPTS[0]


async def test_ctranslate2_streaming_names(generator):
    """`async_generate_tokens` (CTranslate2's asynchronous stream) and `return_log_prob`; `callback`
    on generate_batch stops its example when it returns True."""
    greedy = (await generator.generate_batch([PROMPTS[0]], max_length=6, include_prompt_in_result=False))[0]
    steps = [s async for s in generator.async_generate_tokens(PROMPTS[0], max_length=6, return_log_prob=False,
                                                                  include_prompt_in_result=False)]
    assert [s.token_id for s in steps if s.token_id != 2] == greedy.sequences_ids[0]
    assert all(s.log_prob is None for s in steps)
    calls = []
    cut = await generator.generate_batch(PROMPTS[:2], max_length=6, include_prompt_in_result=False,
                                         callback=lambda step: calls.append(step.batch_id) or step.batch_id == 0)
    assert len(cut[0].sequences_ids[0]) == 1 and calls.count(0) == 1
    full = await generator.generate_batch(PROMPTS[1:2], max_length=6, include_prompt_in_result=False)
    assert cut[1].sequences_ids == full[0].sequences_ids
    rows = []  # return_logits_vocab: each step's logits row, as the result's (CTranslate2's step field)
    with_logits = await generator.generate_batch(PROMPTS[1:2], max_length=6, include_prompt_in_result=False,
                                                 return_logits_vocab=True, callback=rows.append)
    assert len(rows) == len(with_logits[0].logits[0])
    np.testing.assert_array_equal(np.stack([s.logits for s in rows]), with_logits[0].logits[0])
    assert all(s.logits is None for s in steps)


async def test_cached_static_prompt_gives_what_reading_it_gives(generator):
    """The static prompt read once and copied into each batch's rows (cache_static_prompt, the
    default) decodes what reading it with every batch decodes: greedy and beam search, prompts of
    several lengths, the prompt returned or not."""
    static = [1, 30, 31, 32, 33, 34]
    first = None
    for options in ({"include_prompt_in_result": False}, {"beam_size": 2, "return_scores": True}):
        read = await generator.generate_batch(PROMPTS, max_length=8, static_prompt=static, cache_static_prompt=False,
                                              **options)  # fmt: skip
        first = first or read
        for _ in range(2):  # the first call reads and keeps it, the second copies the kept state
            cached = await generator.generate_batch(PROMPTS, max_length=8, static_prompt=static, **options)
            assert [r.sequences_ids for r in cached] == [r.sequences_ids for r in read]
            if "return_scores" in options:
                np.testing.assert_allclose([r.scores for r in cached], [r.scores for r in read], rtol=1e-4)
    assert len(generator._static_prompts._entries) == 1
    plain = await generator.generate_batch(PROMPTS[:1], max_length=8, include_prompt_in_result=False)
    assert plain[0].sequences_ids != first[0].sequences_ids  # the static prompt changes the continuation


async def test_text_generation_and_early_stream_exit(generator):
    text = make_sentences(1, seed=9)[0]
    out = await generator.generate(text, max_length=6)
    ids = (await generator.generate_batch([text], max_length=6, include_prompt_in_result=False))[0].sequences_ids[0]
    assert out == generator.tokenizer.decode([ids])[0]
    async with generator.generate_tokens(text, max_length=40, min_length=40) as steps:
        async for step in steps:
            if step.step >= 2:
                break
    while generator.num_active_batches:
        await asyncio.sleep(0.001)


async def test_score_and_forward_match_transformers_logits(generator, gpt2_dir):
    hf = gpt2_dir[1]
    scored = await generator.score_batch(PROMPTS)
    logits = await generator.forward_batch(PROMPTS)
    log_probs = await generator.forward_batch(PROMPTS, return_log_probs=True)  # CTranslate2's option
    padded = np.zeros((len(PROMPTS), max(map(len, PROMPTS))), np.int32)
    for b, prompt in enumerate(PROMPTS):
        padded[b, : len(prompt)] = prompt
    from_array = await generator.forward_batch(padded, [len(p) for p in PROMPTS], True)  # CTranslate2's order
    for a, b in zip(from_array, log_probs):
        np.testing.assert_array_equal(a, b)
    for prompt, s, lg, lp in zip(PROMPTS, scored, logits, log_probs):
        with torch.no_grad():
            ref = hf(torch.tensor([prompt])).logits[0].numpy()
        np.testing.assert_allclose(lg, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        ref_lp = torch.log_softmax(torch.from_numpy(ref), -1).numpy()
        np.testing.assert_allclose(lp, ref_lp, atol=1e-4)
        np.testing.assert_allclose(s.log_probs, ref_lp[np.arange(len(prompt) - 1), prompt[1:]], atol=1e-4)


def test_generate_tokens_blocking_iterator(generator):
    """Outside a coroutine, a plain `for` reads the stream (CTranslate2's blocking generate_tokens):
    the steps of the async stream; leaving the loop stops the request; a bad prompt raises."""
    greedy = generator.submit_generate_batch([PROMPTS[2]], max_length=8, include_prompt_in_result=False).result()
    steps = list(generator.generate_tokens(PROMPTS[2], max_length=8, include_prompt_in_result=False))
    assert [s.token_id for s in steps if s.token_id != 2] == greedy[0].sequences_ids[0]
    assert steps[-1].is_last and all(s.log_prob is not None for s in steps)
    stream = generator.generate_tokens(PROMPTS[0], max_length=40, min_length=40)
    for step in stream:
        if step.step >= 2:
            break
    deadline = time.monotonic() + 10  # the loop's exit cancelled the request: the worker goes idle
    while generator.num_active_batches and time.monotonic() < deadline:
        time.sleep(0.001)
    assert generator.num_active_batches == 0
    with pytest.raises(RuntimeError, match="not started"):
        iter(stream)
    with pytest.raises(ValueError, match="empty"):
        list(generator.generate_tokens([], max_length=3))


async def test_generate_tokens_streams_a_batch_of_prompts(generator):
    """CTranslate2's generate_tokens takes a batch: each step names its prompt by batch_id, and each
    prompt's steps are those of its own stream."""
    async with generator.generate_tokens(PROMPTS[:3], max_length=6) as steps:
        together = [s async for s in steps]
    for b, prompt in enumerate(PROMPTS[:3]):
        async with generator.generate_tokens(prompt, max_length=6) as steps:
            alone = [(s.token_id, s.text, s.is_last) async for s in steps]
        assert [(s.token_id, s.text, s.is_last) for s in together if s.batch_id == b] == alone
    tokens = generator.tokenizer.ids_to_tokens(PROMPTS[:2])  # token strings: a list of lists too
    async with generator.generate_tokens(tokens, max_length=6, max_batch_size=1) as steps:
        assert {s.batch_id for s in [s async for s in steps]} == {0, 1}


async def test_generate_tokens_plain_for_inside_a_coroutine_is_refused(generator):
    with pytest.raises(TypeError, match="async for"):
        for _ in generator.generate_tokens(PROMPTS[0], max_length=3):
            pass


async def test_set_random_seed_repeats_unseeded_sampling(generator):
    """CTranslate2's set_random_seed: the unseeded sampling requests after it draw the same as after
    the same call before; each takes the next seed of the sequence; an explicit seed is its own."""
    options = dict(max_length=12, sampling_topk=0, include_prompt_in_result=False)

    async def two_requests():
        return [[r.sequences_ids for r in await generator.generate_batch(PROMPTS[:2], **options)] for _ in range(2)]

    try:
        aiotranslate.set_random_seed(7)
        first = await two_requests()
        seeded = await generator.generate_batch(PROMPTS[:2], seed=3, **options)
        aiotranslate.set_random_seed(7)
        again = await two_requests()
    finally:
        aiotranslate.set_random_seed(None)
    assert first == again
    assert first[0] != first[1]
    assert [r.sequences_ids for r in seeded] == [r.sequences_ids for r in await generator.generate_batch(
        PROMPTS[:2], seed=3, **options)]


def test_contains_model(gpt2_dir, tmp_path):
    assert aiotranslate.contains_model(gpt2_dir[0])
    assert not aiotranslate.contains_model(tmp_path)
    assert not aiotranslate.contains_model(tmp_path / "missing")
    assert not aiotranslate.contains_model(tmp_path / "missing.gguf")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    assert not aiotranslate.contains_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": ["gpt2"]}))
    assert not aiotranslate.contains_model(tmp_path)


async def test_generation_stops_where_the_model_positions_end(generator):
    """A max_length past the model's 64 positions: each row stops where they end, as at max_length
    (its prompt and every decoded token but the last are read), instead of failing the call there."""
    for beam_size in (1, 2):
        results = await generator.generate_batch(PROMPTS[:3], max_length=500, min_length=500, beam_size=beam_size,
                                                 include_prompt_in_result=False)  # fmt: skip
        assert [len(r.sequences_ids[0]) for r in results] == [64 - len(p) + 1 for p in PROMPTS[:3]]
    with pytest.raises(ValueError, match="past the model"):
        await generator.generate_batch([[1] * 65], max_length=4)  # a prompt past them is refused


async def test_generator_rejects_bad_prompts(generator):
    with pytest.raises(ValueError, match="empty"):
        await generator.generate_batch([[]])
    with pytest.raises(TypeError, match="unexpected option"):
        await generator.generate_batch(PROMPTS, max_lenght=3)


async def test_generator_ctranslate2_asynchronous(generator):
    """asynchronous=False (CTranslate2's default, spelled out) passes; True points to the twins."""
    plain = await generator.generate_batch(PROMPTS[:1], max_length=3)
    spelled = await generator.generate_batch(PROMPTS[:1], max_length=3, asynchronous=False)
    assert spelled[0].sequences == plain[0].sequences
    assert (await generator.score_batch(PROMPTS[:1], asynchronous=False))[0].tokens
    with pytest.raises(TypeError, match="submit_"):
        await generator.generate_batch(PROMPTS[:1], asynchronous=True)
    with pytest.raises(TypeError, match="submit_"):
        await generator.score_batch(PROMPTS[:1], asynchronous=True)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return build_encoder("bert", tmp_path_factory.mktemp("bert"))


async def test_encoder_forward_batch_matches_transformers(bert_dir):
    hf = load_hf_encoder("bert", bert_dir)
    rows = [[2, 5, 7, 9, 3], [2, 8, 3], [2, 11, 12, 13, 14, 15, 3]]
    types = [[0] * 3 + [1] * 2, [0, 0, 1], [0] * 7]
    async with Encoder(bert_dir, intra_threads=1) as encoder:
        out, *_ = await asyncio.gather(*(encoder.forward_batch(rows, token_type_ids=types) for _ in range(3)))
    for b, (row, t) in enumerate(zip(rows, types)):
        hidden, pooled = hf_encode(hf, np.array(row), np.array(t))
        np.testing.assert_allclose(out.last_hidden_state[b, : len(row)], hidden, atol=1e-4)
        np.testing.assert_allclose(out.pooler_output[b], pooled, atol=1e-4)
        assert not out.last_hidden_state[b, len(row):].any()


async def test_encoder_forward_batch_of_a_padded_array(bert_dir):
    """CTranslate2's form for arrays: a padded (B, S) batch and each row's length."""
    rows = [[2, 5, 7, 9, 3], [2, 8, 3]]
    types = [[0] * 3 + [1] * 2, [0, 0, 1]]
    padded, padded_types = np.zeros((2, 5), np.int64), np.ones((2, 5), np.int64)
    for b, (row, t) in enumerate(zip(rows, types)):
        padded[b, : len(row)], padded_types[b, : len(t)] = row, t
    async with Encoder(bert_dir, intra_threads=1) as encoder:
        want = await encoder.forward_batch(rows, token_type_ids=types)
        got = await encoder.forward_batch(padded, [5, 3], padded_types)
        with pytest.raises(ValueError, match="lengths"):
            await encoder.forward_batch(padded, [6, 3])
        threaded = await asyncio.to_thread(lambda: encoder.submit_forward_batch(rows, token_type_ids=types).result())
    for out in (got, threaded):  # the thread form's Future holds the same EncoderForwardOutput
        np.testing.assert_array_equal(out.last_hidden_state, want.last_hidden_state)
        np.testing.assert_array_equal(out.pooler_output, want.pooler_output)
