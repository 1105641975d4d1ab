"""Translator end to end on a tiny random Marian model with a real (tiny) SentencePiece tokenizer:
the async surface gives exactly what the synchronous decoding core and transformers give."""

import asyncio
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aiotranslate.api.translator import Translator
from aiotranslate.decoding import DecodingOptions, decode
from aiotranslate.decoding.search import pad
from aiotranslate.errors import QueueFull

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).parents[1] / "tokenizers"))
from seq2seq_fixtures import build_seq2seq, load_hf  # noqa: E402
from tokenizer_fixtures import build_marian_dir, make_sentences  # noqa: E402

SENTENCES = make_sentences(12, seed=5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = build_marian_dir(tmp_path_factory.mktemp("marian"))
    vocab = len(json.loads((root / "vocab.json").read_text()))
    return build_seq2seq(
        "marian", root, vocab_size=vocab, decoder_vocab_size=vocab, pad_token_id=vocab - 1, decoder_start_token_id=vocab - 1,
        max_position_embeddings=256,
    )


@pytest.fixture(scope="module")
def translator(model_dir):
    with Translator(model_dir, inter_threads=2, intra_threads=1) as t:
        yield t


def core_greedy(translator, sources_ids, max_length=12):
    """The synchronous decoding core on the same model: what every API path must reproduce."""
    loaded = translator._loaded
    src, lengths = pad(sources_ids)
    state = loaded.model.encode(src, lengths, n_threads=1)
    options = DecodingOptions(end_ids=loaded.special.end, max_length=max_length, min_length=1)
    return [r.hypotheses[0] for r in decode(loaded.model, state, [[loaded.special.start]] * len(src), options)]


async def test_translate_batch_matches_core_and_transformers(translator, model_dir):
    ids = translator.tokenizer.encode(SENTENCES[:4])
    results = await translator.translate_batch(SENTENCES[:4], beam_size=1, max_decoding_length=12)
    expected = core_greedy(translator, ids)
    assert [r.hypotheses[0] for r in results] == translator.tokenizer.ids_to_tokens(expected)
    torch.manual_seed(0)
    hf = load_hf(model_dir)
    for src, hyp in zip(ids, expected):
        out = hf.generate(
            torch.tensor([src]), num_beams=1, do_sample=False, max_new_tokens=12, min_new_tokens=1, forced_eos_token_id=None
        )
        hf_ids = [t for t in out[0].tolist()[1:] if t != 0]
        assert hf_ids == hyp


async def test_the_models_bad_words_are_never_generated(translator, model_dir, tmp_path):
    """config.json's bad_words_ids (OPUS-MT bans its pad token, which starts decoding) act as the
    same suppress_sequences given by the caller: banned before the softmax, on every call."""
    options = dict(max_decoding_length=12, return_scores=True)
    plain = await translator.translate_batch(SENTENCES[:3], **options)
    banned, pair = plain[0].hypotheses[0][0], plain[1].hypotheses[0][:2]
    banned_dir = tmp_path / "banned"
    shutil.copytree(model_dir, banned_dir)
    config = json.loads((banned_dir / "config.json").read_text())
    config["bad_words_ids"] = translator.tokenizer.tokens_to_ids([[banned], pair])
    (banned_dir / "config.json").write_text(json.dumps(config))
    with Translator(banned_dir, intra_threads=1) as t:
        results = await t.translate_batch(SENTENCES[:3], **options)
    asked = await translator.translate_batch(SENTENCES[:3], suppress_sequences=[[banned], pair], **options)
    assert [(r.hypotheses, r.scores) for r in results] == [(r.hypotheses, r.scores) for r in asked]
    for r in results:
        tokens = r.hypotheses[0]
        assert banned not in tokens and all(tokens[i : i + 2] != pair for i in range(len(tokens) - 1))


async def test_prefix_bias_without_a_prefix_is_plain_decoding(translator):
    """As in CTranslate2, prefix_bias_beta only acts on a call that gives target prefixes."""
    options = dict(beam_size=1, max_decoding_length=8, return_scores=True)
    plain = await translator.translate_batch(SENTENCES[:2], **options)
    biased = await translator.translate_batch(SENTENCES[:2], prefix_bias_beta=0.5, **options)
    assert [(r.hypotheses, r.scores) for r in biased] == [(r.hypotheses, r.scores) for r in plain]
    sampled = await translator.translate_batch(SENTENCES[:1], num_hypotheses=2, sampling_topk=4, seed=3,
                                               prefix_bias_beta=0.5)  # fmt: skip
    assert len(sampled[0].hypotheses) == 2


async def test_token_strings_ids_and_text_inputs_agree(translator):
    ids = translator.tokenizer.encode(SENTENCES[:3])
    tokens = translator.tokenizer.ids_to_tokens(ids, target=False)
    a = await translator.translate_batch(SENTENCES[:3], beam_size=1, max_decoding_length=8)
    b = await translator.translate_batch(tokens, beam_size=1, max_decoding_length=8)
    c = await translator.translate_batch(ids, beam_size=1, max_decoding_length=8)
    assert a == b == c
    text = await translator.translate(SENTENCES[0], beam_size=1, max_decoding_length=8)
    assert text == translator.tokenizer.decode(translator.tokenizer.tokens_to_ids([a[0].hypotheses[0]]))[0]


async def test_concurrent_single_requests_equal_one_batch(translator):
    batched = await translator.translate_batch(SENTENCES, beam_size=2, max_decoding_length=10)
    singles = await asyncio.gather(
        *(translator.translate_batch([s], beam_size=2, max_decoding_length=10) for s in SENTENCES)
    )
    assert [r[0] for r in singles] == batched
    assert translator.statistics()["max_batch_size"] > 1  # concurrent requests were merged


async def test_max_batch_size_splits_and_keeps_input_order(translator):
    whole = await translator.translate_batch(SENTENCES, beam_size=1, max_decoding_length=6)
    for batch_type, size in (("examples", 3), ("tokens", 40)):
        split = await translator.translate_batch(
            SENTENCES, beam_size=1, max_decoding_length=6, max_batch_size=size, batch_type=batch_type
        )
        assert split == whole


async def test_sub_batches_of_one_call_are_not_merged_back(model_dir):
    async with Translator(model_dir, inter_threads=2, intra_threads=1) as translator:
        for search in ({"beam_size": 1}, {"beam_size": 2}):
            await translator.translate_batch(SENTENCES, max_decoding_length=6, max_batch_size=3, **search)
        assert translator.statistics()["max_batch_size"] == 3


async def test_scores_agree_with_score_batch(translator):
    results = await translator.translate_batch(
        SENTENCES[:3], beam_size=1, max_decoding_length=8, min_decoding_length=0, return_scores=True
    )
    scored = await translator.score_batch(SENTENCES[:3], [r.hypotheses[0] for r in results])
    for r, s in zip(results, scored):
        assert s.tokens[:-1] == r.hypotheses[0]
        # A hypothesis cut at max_decoding_length has no end token, so none in its score.
        decoded = s.log_probs if len(r.hypotheses[0]) < 8 else s.log_probs[:-1]
        assert np.isclose(np.mean(decoded), r.scores[0], atol=1e-5)


async def test_score_offset_leaves_out_the_first_target_tokens(translator):
    """CTranslate2's offset: the first tokens still condition the rest, but are not scored."""
    targets = [["a", "b", "c"], ["d", "e"]]
    whole = await translator.score_batch(SENTENCES[:2], targets)
    # Requests with different offsets may share a batch: each keeps its own.
    parts = await asyncio.gather(*(translator.score_batch(SENTENCES[:2], targets, offset=n) for n in (1, 2)))
    for n, part in zip((1, 2), parts):
        for w, p in zip(whole, part):
            assert p.tokens == w.tokens[n:]
            np.testing.assert_allclose(p.log_probs, w.log_probs[n:], rtol=1e-6)
    with pytest.raises(ValueError, match="offset"):
        await translator.score_batch(SENTENCES[:1], targets[:1], offset=-1)


async def test_stream_yields_the_greedy_translation_with_text(translator):
    expected = (await translator.translate_batch([SENTENCES[1]], beam_size=1, max_decoding_length=10))[0]
    async with translator.generate_tokens(SENTENCES[1], max_decoding_length=10) as steps:
        got = [s async for s in steps]
    tokens = [s.token for s in got if not (s.is_last and s.token == "</s>")]
    assert tokens == expected.hypotheses[0]
    assert got[-1].is_last and all(s.log_prob is not None for s in got)
    assert "".join(s.text for s in got).strip() == (await translator.translate(SENTENCES[1], beam_size=1, max_decoding_length=10))


def test_stream_read_with_a_plain_for_outside_a_coroutine(translator):
    """CTranslate2's blocking generate_tokens: the same steps as the async stream gives."""
    expected = translator.submit_translate_batch([SENTENCES[1]], beam_size=1, max_decoding_length=10).result()[0]
    got = list(translator.generate_tokens(SENTENCES[1], max_decoding_length=10))
    assert [s.token for s in got if not (s.is_last and s.token == "</s>")] == expected.hypotheses[0]


async def test_callback_sees_each_token_and_stops_its_example(translator):
    """CTranslate2's `callback`: every token of every example, numbered in the caller's batch across
    sub-batches (max_batch_size), named; True stops that example there and no other."""
    whole = await translator.translate_batch(SENTENCES[:3], beam_size=1, max_decoding_length=8)
    seen: dict[int, list] = {}

    def callback(step):
        seen.setdefault(step.batch_id, []).append(step)
        return step.batch_id == 1 and step.step == 1

    got = await translator.translate_batch(SENTENCES[:3], beam_size=1, max_decoding_length=8, max_batch_size=2,
                                           callback=callback)  # fmt: skip
    assert got[0] == whole[0] and got[2] == whole[2]
    assert got[1].hypotheses[0] == whole[1].hypotheses[0][:2]
    for i in (0, 2):
        steps = seen[i]
        assert [s.step for s in steps] == list(range(len(steps))) and steps[-1].is_last
        named = [s.token for s in steps if not (s.is_last and s.token == "</s>")]
        assert named == whole[i].hypotheses[0]
    assert [s.token for s in seen[1]] == whole[1].hypotheses[0][:2]


async def test_a_failing_callback_fails_its_call_alone(translator):
    def broken(step):
        raise KeyError("from the callback")

    other = asyncio.ensure_future(translator.translate_batch(SENTENCES[:2], beam_size=1, max_decoding_length=6))
    with pytest.raises(KeyError, match="from the callback"):
        await translator.translate_batch(SENTENCES[2:4], beam_size=1, max_decoding_length=6, callback=broken)
    assert len(await other) == 2
    with pytest.raises(TypeError, match="callable"):
        await translator.translate_batch(SENTENCES[:1], callback=3)
    seen = []  # a stream's callback (CTranslate2's generate_tokens takes one): each step, then the stream's
    async with translator.generate_tokens(SENTENCES[0], max_decoding_length=6, callback=seen.append) as steps:
        streamed = [s async for s in steps]
    assert [s.token_id for s in seen] == [s.token_id for s in streamed] and seen
    async with translator.generate_tokens(SENTENCES[0], max_decoding_length=6, callback=lambda s: s.step == 1) as steps:
        assert [s.step async for s in steps] == [0, 1]  # True stops the stream there
    with pytest.raises(ZeroDivisionError):
        async with translator.generate_tokens(SENTENCES[0], callback=lambda s: 1 / 0) as steps:
            [s async for s in steps]
    assert len(await translator.translate_batch(SENTENCES[:1], max_decoding_length=4)) == 1


async def test_score_batch_truncates_both_sides(translator):
    """CTranslate2's max_input_length in score_batch: the source as translate_batch cuts it, and the
    scored target tokens too, the end token kept last."""
    source, target = translator.tokenizer.encode(SENTENCES[8:9]), translator.tokenizer.tokenize(SENTENCES[9:10])
    end = source[0][-1]
    cut = await translator.score_batch(source, target, max_input_length=4)
    by_hand = await translator.score_batch([source[0][:3] + [end]], [target[0][:3]])
    assert cut[0].tokens == by_hand[0].tokens == target[0][:3] + ["</s>"]
    assert cut[0].log_probs == by_hand[0].log_probs


async def test_empty_sources_return_their_prefix_without_decoding(translator):
    """As in CTranslate2: an empty source (or a blank text) gives num_hypotheses copies of its target
    prefix, scored 0, with no attention; scoring against it gives 0 per token; the other examples of
    the call translate as they would alone, in input order, with max_batch_size too."""
    tokens = translator.tokenizer.tokenize(SENTENCES[:2])
    alone = await translator.translate_batch(tokens, beam_size=2, max_decoding_length=6, return_scores=True)
    for options in ({}, {"max_batch_size": 1}):
        mixed = await translator.translate_batch([[], tokens[0], [], tokens[1]], [None, None, ["▁a"], None],
                                                 beam_size=2, num_hypotheses=2, max_decoding_length=6,
                                                 return_scores=True, return_attention=True, **options)  # fmt: skip
        assert [r.hypotheses for r in mixed[::2]] == [[[], []], [["▁a"], ["▁a"]]]
        assert [r.scores for r in mixed[::2]] == [[0.0, 0.0]] * 2
        assert [np.asarray(a).shape for a in mixed[2].attention] == [(1, 0)] * 2
        assert [r.hypotheses[0] for r in mixed[1::2]] == [r.hypotheses[0] for r in alone]
    assert await translator.translate(["", "  ", SENTENCES[0]], max_decoding_length=6) == [
        "", "", await translator.translate(SENTENCES[0], max_decoding_length=6)]
    scored = await translator.score_batch([[], tokens[0]], [tokens[1], tokens[1]])
    assert scored[0].tokens == scored[1].tokens and scored[0].log_probs == [0.0] * len(scored[1].tokens)
    async with translator.generate_tokens([], max_decoding_length=6) as steps:
        assert [s async for s in steps] == []


async def test_bad_inputs_fail_alone_with_clear_errors(translator):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        await translator.translate_batch([[10**6]])
    with pytest.raises(TypeError, match="unexpected option"):
        await translator.translate_batch(SENTENCES[:1], beam_sise=2)
    with pytest.raises(TypeError, match="single string"):
        await translator.translate_batch("a sentence")
    with pytest.raises(TypeError, match="list of examples, got NoneType"):
        await translator.translate_batch(None)
    with pytest.raises(TypeError, match="wrap one example's tokens in a list"):
        await translator.translate_batch([5, 6])
    with pytest.raises(TypeError, match="an item is of type NoneType"):
        await translator.translate_batch([SENTENCES[0], None])
    with pytest.raises(TypeError, match="beam_size must be an integer"):
        await translator.translate_batch(SENTENCES[:1], beam_size="2")
    with pytest.raises(ValueError, match=r"prefix_bias_beta must lie in \[0, 1\)"):
        await translator.translate_batch(SENTENCES[:1], target_prefix=[["a"]], prefix_bias_beta=1.0)
    assert len(await translator.translate_batch(SENTENCES[:1], max_decoding_length=4)) == 1


async def test_ctranslate2_options_at_their_defaults(translator):
    """Code written for CTranslate2 that passes its defaults explicitly runs unchanged."""
    plain = await translator.translate_batch(SENTENCES[:2], max_decoding_length=6)
    spelled = await translator.translate_batch(
        SENTENCES[:2], max_decoding_length=6, use_vmap=False, prefix_bias_beta=0.0, replace_unknowns=False
    )
    assert [r.hypotheses for r in spelled] == [r.hypotheses for r in plain]
    vmap = await translator.translate_batch(SENTENCES[:2], max_decoding_length=6, use_vmap=True)
    assert [r.hypotheses for r in vmap] == [r.hypotheses for r in plain]
    sync = await translator.translate_batch(SENTENCES[:2], max_decoding_length=6, asynchronous=False)
    assert [r.hypotheses for r in sync] == [r.hypotheses for r in plain]
    with pytest.raises(TypeError, match="submit_"):
        await translator.translate_batch(SENTENCES[:2], asynchronous=True)
    with pytest.raises(TypeError, match="submit_"):
        await translator.score_batch(SENTENCES[:1], [["a"]], asynchronous=True)


async def test_ctranslate2_constructor_arguments(model_dir, translator):
    with Translator(model_dir, "cpu", intra_threads=1, flash_attention=True, tensor_parallel=False) as t:
        assert (t.flash_attention, t.tensor_parallel, t.device) == (True, False, "cpu")
        got = await t.translate_batch(SENTENCES[:2], max_decoding_length=6)
    assert [r.hypotheses for r in got] == [
        r.hypotheses for r in await translator.translate_batch(SENTENCES[:2], max_decoding_length=6)
    ]
    with pytest.raises(ValueError, match="files"):
        Translator(model_dir, files={"model.bin": b""})


def test_submit_from_plain_threads(translator):
    futures = [translator.submit_translate_batch([s], beam_size=1, max_decoding_length=5) for s in SENTENCES[:4]]
    whole = translator.submit_translate_batch(SENTENCES[:4], beam_size=1, max_decoding_length=5).result(60)
    assert [f.result(60)[0] for f in futures] == whole


async def test_nowait_raises_queue_full(model_dir):
    async with Translator(model_dir, intra_threads=1, max_queued_batches=1) as t:
        long = asyncio.ensure_future(t.translate_batch(SENTENCES, beam_size=4, max_decoding_length=200, min_decoding_length=200))
        while t.num_active_batches == 0:
            await asyncio.sleep(0.001)
        queued = t.translate_batch_nowait(SENTENCES[:1], max_decoding_length=2)
        with pytest.raises(QueueFull):
            t.translate_batch_nowait(SENTENCES[:1], max_decoding_length=2)
        long.cancel()
        assert len(await queued) == 1


async def test_attention_covers_each_example_source(translator):
    """As in CTranslate2: one row per returned target token, one column per token of that example's
    source (not the batch's longest); each row a distribution; the same as the example alone."""
    ids = translator.tokenizer.encode(SENTENCES[3:6])
    batch = await translator.translate_batch(ids, beam_size=2, return_attention=True, max_decoding_length=6)
    for source, result in zip(ids, batch):
        attention = np.asarray(result.attention[0])
        assert attention.shape == (len(result.hypotheses[0]), len(source))
        np.testing.assert_allclose(attention.sum(axis=1), 1.0, rtol=1e-4)
        alone = (await translator.translate_batch([source], beam_size=2, return_attention=True, max_decoding_length=6))[0]
        np.testing.assert_allclose(np.asarray(alone.attention[0]), attention, atol=1e-5)
    assert len({len(s) for s in ids}) > 1  # the sources differ in length


async def test_max_input_length_keeps_the_end_token(translator):
    """As CTranslate2 (and transformers' tokenizers) truncate: the first max_input_length - 1 source
    tokens, then the source's </s>."""
    ids = translator.tokenizer.encode(SENTENCES[6:8])
    end = ids[0][-1]
    cut = await translator.translate_batch(ids, max_input_length=4, beam_size=1, max_decoding_length=6, return_scores=True)
    kept = await translator.translate_batch([s[:3] + [end] for s in ids], beam_size=1, max_decoding_length=6,
                                            return_scores=True)  # fmt: skip
    assert [r.hypotheses for r in cut] == [r.hypotheses for r in kept]
    assert [r.scores for r in cut] == [r.scores for r in kept]
    assert all(len(s) > 4 for s in ids)


async def test_replace_unknowns_takes_the_most_attended_source_token(translator):
    """CTranslate2's replace_unknowns: an unknown target token (here forced by the target prefix)
    becomes the source token its step attended to most, spelled as the caller gave it."""
    tokenizer = translator.tokenizer
    source = tokenizer.tokenize([SENTENCES[0]])[0]
    source[1] = "▁zzqqxx"  # out of the vocabulary: its spelling survives only through the caller's strings
    unk = tokenizer.ids_to_tokens([[translator._loaded.special.unk]])[0][0]
    prefix = [[unk, unk]]
    seen = (await translator.translate_batch([source], prefix, return_attention=True, max_decoding_length=5))[0]
    got = (await translator.translate_batch([source], prefix, replace_unknowns=True, max_decoding_length=5))[0]
    expected = [source[int(np.argmax(seen.attention[0][t][: len(source)]))] for t in (0, 1)]
    assert got.hypotheses[0][:2] == expected
    assert got.hypotheses[0][2:] == seen.hypotheses[0][2:]
    assert got.attention == []  # not asked for
    kept = (await translator.translate_batch([source], prefix, replace_unknowns=True, return_attention=True,
                                             max_decoding_length=5))[0]  # fmt: skip
    assert kept.hypotheses == got.hypotheses and len(kept.attention[0]) == len(seen.attention[0])
    with pytest.raises(ValueError, match="token outputs"):
        await translator.translate(SENTENCES[:1], replace_unknowns=True)
