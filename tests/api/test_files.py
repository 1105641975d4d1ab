"""translate_file / score_file: line-for-line output in input order (empty lines kept) on files
larger than the read-ahead, CTranslate2's output formats and ExecutionStats, the tokenization rule
(given functions, else the model's tokenizer, else whitespace), progress only on a terminal."""

import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aiotranslate import Generator, Translator

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from seq2seq_fixtures import build_seq2seq  # noqa: E402
from tiny_models import tiny_models  # noqa: E402
from tokenizer_fixtures import make_sentences  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])  # the work runs on a thread of its own
GREEDY = dict(beam_size=1, max_decoding_length=6)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def translator(models):
    with Translator(models.translator, inter_threads=2, intra_threads=1) as t:
        yield t


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def with_blanks(sentences: list[str]) -> list[str]:
    """Empty lines at the start, in runs in the middle, and at the end."""
    lines = [""]
    for i, s in enumerate(sentences):
        lines.append(s)
        lines.extend([""] * (i % 3 == 0) + [""] * (i % 7 == 0))
    return lines + ["", ""]


async def test_file_round_trip_keeps_order_and_empty_lines(translator, tmp_path):
    sentences = make_sentences(45, seed=8)
    lines = with_blanks(sentences)
    source = write_lines(tmp_path / "in.txt", lines)
    # read_batch_size 4: the file is many times the read-ahead of (inter_threads + 1) chunks.
    stats = await translator.translate_file(source, tmp_path / "out.txt", max_batch_size=2, read_batch_size=4, **GREEDY)
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    expected = iter(await translator.translate(sentences, **GREEDY))
    assert out[:-1] == [next(expected) if line else "" for line in lines]
    results = await translator.translate_batch(sentences, **GREEDY)
    assert stats.num_examples == len(lines)
    assert stats.num_tokens == sum(len(r.hypotheses[0]) for r in results)
    assert stats.total_time_in_ms > 0


async def test_scores_and_hypotheses_lines_and_the_thread_twin(translator, tmp_path):
    sentences = make_sentences(5, seed=2)
    source = write_lines(tmp_path / "in.txt", [sentences[0], "", *sentences[1:]])
    options = dict(beam_size=2, num_hypotheses=2, max_decoding_length=6)
    future = translator.submit_translate_file(source, tmp_path / "out.txt", with_scores=True, **options)
    stats = await asyncio.wrap_future(future)
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    results = await translator.translate_batch(sentences, return_scores=True, **options)
    tokenizer = translator.tokenizer
    expected = [(score, tokenizer.decode(tokenizer.tokens_to_ids([h], target=True))[0])
                for r in results for score, h in zip(r.scores, r.hypotheses)]  # fmt: skip
    assert out[2:4] == ["", ""]
    assert_scored_lines(out[:2] + out[4:], expected)
    assert stats.num_examples == 6


def assert_scored_lines(lines, expected):
    """`score ||| rest` lines against (score, rest): scores up to print and float rounding."""
    parsed = [line.split(" ||| ", 1) for line in lines]
    assert [rest for _, rest in parsed] == [rest for _, rest in expected]
    np.testing.assert_allclose([float(s) for s, _ in parsed], [s for s, _ in expected], rtol=1e-5, atol=1e-5)


async def test_tokenize_functions_win_over_the_tokenizer(translator, tmp_path):
    sentences = make_sentences(6, seed=3)
    tokenize = translator.tokenizer.tokenize
    source = write_lines(tmp_path / "in.txt", [" ".join(tokenize([s])[0]) for s in sentences])
    await translator.translate_file(source, tmp_path / "out.txt", source_tokenize_fn=str.split,
                                    target_detokenize_fn="|".join, **GREEDY)  # fmt: skip
    results = await translator.translate_batch([tokenize([s])[0] for s in sentences], **GREEDY)
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines() == ["|".join(r.hypotheses[0]) for r in results]


async def test_target_prefix_file(translator, tmp_path):
    sentences = make_sentences(4, seed=6)
    prefixes = ["", "the", "", "a stone"]
    source = write_lines(tmp_path / "in.txt", sentences)
    prefix = write_lines(tmp_path / "prefix.txt", prefixes)
    await translator.translate_file(source, tmp_path / "out.txt", prefix, **GREEDY)  # CTranslate2's third argument
    tokenized = [translator.tokenizer.tokenize([p], target=True, add_special_tokens=False)[0] if p else None
                 for p in prefixes]  # fmt: skip
    expected = await translator.translate_batch(sentences, tokenized, **GREEDY)
    tokenizer = translator.tokenizer
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines() == [
        tokenizer.decode(tokenizer.tokens_to_ids([r.hypotheses[0]], target=True))[0] for r in expected
    ]


async def test_score_file_matches_score_batch(translator, tmp_path):
    sources, targets = make_sentences(5, seed=4), make_sentences(5, seed=5)
    source = write_lines(tmp_path / "src.txt", sources[:2] + [""] + sources[2:])
    target = write_lines(tmp_path / "tgt.txt", targets[:2] + ["x"] + targets[2:])
    stats = await translator.score_file(source, target, tmp_path / "out.txt", with_tokens_score=True, max_batch_size=2)
    scored = await translator.score_batch(sources, targets)
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    assert out[2] == "" and len(out) == 6
    lines = [line.split(" ||| ") for line in out[:2] + out[3:]]
    assert [target for _, target, _ in lines] == targets
    for (mean, _, tokens), s in zip(lines, scored):
        np.testing.assert_allclose([float(x) for x in tokens.split()], s.log_probs, atol=1e-5)
        assert float(mean) == pytest.approx(np.mean(s.log_probs), abs=1e-5)
    assert stats.num_tokens == sum(len(s.log_probs) for s in scored) and stats.num_examples == 6


@pytest.fixture(scope="module")
def ids_only_model(tmp_path_factory):
    """A Marian model with no tokenizer files: it reads and writes token ids."""
    return build_seq2seq("marian", tmp_path_factory.mktemp("ids-only"), vocab_size=64, decoder_vocab_size=64,
                         pad_token_id=63, decoder_start_token_id=63, max_position_embeddings=64)  # fmt: skip


async def test_whitespace_rule_for_a_model_without_tokenizer(ids_only_model, tmp_path):
    rows = [[5, 9, 12, 0], [7, 3, 0], [40, 41, 42, 43, 0]]
    source = write_lines(tmp_path / "in.txt", [" ".join(map(str, r)) for r in rows[:1]] + [""] +
                         [" ".join(map(str, r)) for r in rows[1:]])  # fmt: skip
    async with Translator(ids_only_model, intra_threads=1) as translator:
        assert translator.tokenizer is None
        await translator.translate_file(source, tmp_path / "out.txt", **GREEDY)
        results = await translator.translate_batch(rows, **GREEDY)
    lines = [" ".join(map(str, r.hypotheses[0])) for r in results]
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines() == lines[:1] + [""] + lines[1:]


async def test_progress_bar_only_on_a_terminal(translator, tmp_path, capfd):
    source = write_lines(tmp_path / "in.txt", make_sentences(3, seed=1))
    await translator.translate_file(source, tmp_path / "out.txt", **GREEDY)
    assert capfd.readouterr().err == ""  # pytest's stderr is not a terminal
    await translator.translate_file(source, tmp_path / "out.txt", progress=True, **GREEDY)
    assert "3 lines" in capfd.readouterr().err


async def test_bad_files_and_options_fail_clearly(translator, tmp_path):
    source = write_lines(tmp_path / "in.txt", make_sentences(3, seed=1))
    with pytest.raises(FileNotFoundError, match="no such input file"):
        await translator.translate_file(tmp_path / "missing.txt", tmp_path / "out.txt")
    with pytest.raises(ValueError, match="same number of lines"):
        await translator.score_file(source, write_lines(tmp_path / "short.txt", ["a"]), tmp_path / "out.txt")
    with pytest.raises(TypeError, match="unexpected option"):
        await translator.translate_file(source, tmp_path / "out.txt", beam_sise=2)
    assert len(await translator.translate_batch(["a"], **GREEDY)) == 1


async def test_generator_score_file(models, tmp_path):
    prompts = make_sentences(4, seed=7)
    source = write_lines(tmp_path / "in.txt", prompts[:1] + [""] + prompts[1:])
    async with Generator(models.generator, intra_threads=1) as generator:
        await generator.score_file(source, tmp_path / "out.txt")
        scored = await generator.score_batch(prompts)
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    assert out[1] == ""
    assert_scored_lines(out[:1] + out[2:], [(np.mean(s.log_probs), p) for s, p in zip(scored, prompts)])



async def test_cancelling_translate_file_stops_its_batches(translator, tmp_path):
    source = write_lines(tmp_path / "in.txt", make_sentences(40, seed=9))
    before = translator.statistics()["num_examples_run"]
    task = asyncio.ensure_future(translator.translate_file(
        source, tmp_path / "out.txt", max_batch_size=1, beam_size=1, max_decoding_length=200, min_decoding_length=200))
    while translator.num_active_batches == 0:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    end = time.monotonic() + 10
    while translator.num_active_batches or translator.num_queued_batches:
        assert time.monotonic() < end, "the file's batches did not stop"
        await asyncio.sleep(0.001)
    assert translator.statistics()["num_examples_run"] - before < 40
    assert len(await translator.translate_batch(["a"], **GREEDY)) == 1
