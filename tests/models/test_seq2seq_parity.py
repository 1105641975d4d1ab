"""Encoder-decoder models (Marian, BART, mBART, M2M100, NLLB) against transformers on tiny random
checkpoints: encoder output, incremental decoding with the KV cache against a full uncached
forward, ragged batches (each row against transformers on that row alone), row selection as beam
search uses it, and the position limits."""

from __future__ import annotations

import numpy as np
import pytest
from seq2seq_fixtures import (
    FORCED_BOS,
    MAX_POSITIONS,
    SEQ2SEQ_KINDS,
    build_seq2seq,
    hf_cross_attention,
    hf_encoder_output,
    hf_logits,
    load_hf,
    max_rel_diff,
    random_ids,
)

from aiotranslate.models import load_model

TOL = 1e-4


@pytest.fixture(scope="module", params=SEQ2SEQ_KINDS)
def pair(request, tmp_path_factory):
    """(kind, our model, transformers model) loaded from the same directory."""
    root = build_seq2seq(request.param, tmp_path_factory.mktemp(request.param), seed=SEQ2SEQ_KINDS.index(request.param))
    return request.param, load_model(root), load_hf(root)


def _avoid(hf, start: int) -> tuple[int, ...]:
    # pad would move M2M100's positions (transformers numbers non-pad tokens only), eos and the
    # start token are never fed back mid-sequence.
    return tuple({hf.config.pad_token_id, 2, hf.config.eos_token_id, start})


def _sources(hf, rng, lengths):
    vocab = hf.config.vocab_size
    rows = [random_ids(rng, n, vocab, _avoid(hf, -1)) for n in lengths]
    src = np.full((len(rows), max(lengths)), hf.config.pad_token_id, dtype=np.int32)
    for i, r in enumerate(rows):
        src[i, : len(r)] = r
    return rows, src, np.asarray(lengths, dtype=np.int32)


def _targets(model, hf, rng, lengths):
    """Target rows starting with the decoder start token."""
    vocab = model.vocab_size
    start = model.decoder_start_token_id
    return [
        np.concatenate([[start], random_ids(rng, n - 1, vocab, _avoid(hf, start))]).astype(np.int32) for n in lengths
    ]


def test_config_tokens_match_transformers(pair):
    kind, model, hf = pair
    assert model.decoder_start_token_id == hf.generation_config.decoder_start_token_id
    if kind.startswith("marian"):
        assert model.decoder_start_token_id == hf.config.pad_token_id
    assert model.forced_bos_token_id == FORCED_BOS.get(kind)
    assert model.vocab_size == hf.get_output_embeddings().weight.shape[0]


def test_encoder_output_ragged_batch(pair):
    _, model, hf = pair
    rng = np.random.default_rng(1)
    rows, src, lengths = _sources(hf, rng, [5, 1, MAX_POSITIONS, 9, 2, 13, 7])
    memory = model.encoder_output(src, lengths)
    assert memory.shape == (7, MAX_POSITIONS, hf.config.d_model)
    worst = max(max_rel_diff(memory[i, : len(r)], hf_encoder_output(hf, r)) for i, r in enumerate(rows))
    assert worst < TOL


def test_incremental_decoding_matches_full_forward(pair):
    """Ragged sources and targets; one token per step, rows finishing at different steps (0 tokens
    appended leaves a row unchanged)."""
    _, model, hf = pair
    rng = np.random.default_rng(2)
    rows, src, src_lengths = _sources(hf, rng, [4, 11, 1, MAX_POSITIONS, 6, 3, 8])
    tgt_lengths = [5, 1, 9, MAX_POSITIONS, 3, 7, 2]
    targets = _targets(model, hf, rng, tgt_lengths)
    state = model.encode(src, src_lengths)
    assert state.batch_size == 7
    got = [[] for _ in rows]
    for t in range(max(tgt_lengths)):
        live = np.array([t < n for n in tgt_lengths])
        ids = np.array([[tg[t] if t < len(tg) else 0] for tg in targets], dtype=np.int32)
        logits = model.decode(state, ids, live.astype(np.int32))
        assert logits.shape == (7, model.vocab_size)
        for i in range(7):
            if live[i]:
                got[i].append(logits[i])
            else:  # a row given no token keeps its last logits
                np.testing.assert_array_equal(logits[i], got[i][-1])
    np.testing.assert_array_equal(state.lengths, tgt_lengths)
    worst = max(max_rel_diff(np.stack(got[i]), hf_logits(hf, r, targets[i])) for i, r in enumerate(rows))
    assert worst < TOL


def test_prefix_then_ragged_chunks(pair):
    """A ragged multi-token prefix in one call (all_logits), then chunks of several tokens appended
    to rows holding different numbers of tokens, then single steps."""
    _, model, hf = pair
    rng = np.random.default_rng(3)
    rows, src, src_lengths = _sources(hf, rng, [7, 3, 12])
    targets = _targets(model, hf, rng, [12, 6, 11])
    state = model.encode(src, src_lengths)
    got = [[] for _ in rows]
    done = np.zeros(3, dtype=np.int32)
    for chunk in ([4, 1, 6], [3, 2, 0], [1, 3, 2], [1, 0, 1], [3, 0, 2]):
        counts = np.array(chunk, dtype=np.int32)
        ids = np.zeros((3, max(chunk)), dtype=np.int32)
        for i, n in enumerate(counts):
            ids[i, :n] = targets[i][done[i] : done[i] + n]
        logits = model.decode(state, ids, counts, all_logits=True)
        assert logits.shape == (3, max(chunk), model.vocab_size)
        for i, n in enumerate(counts):
            got[i].extend(logits[i, :n])
        done += counts
    assert done.tolist() == [len(t) for t in targets]
    worst = max(max_rel_diff(np.stack(got[i]), hf_logits(hf, r, targets[i])) for i, r in enumerate(rows))
    assert worst < TOL


def test_select_expands_reorders_and_drops_rows(pair):
    """Beam search: expand B -> B * beam after the first step, follow other rows' histories, drop
    rows; every surviving row must still match transformers on its own history."""
    _, model, hf = pair
    rng = np.random.default_rng(4)
    rows, src, src_lengths = _sources(hf, rng, [6, 10])
    start = model.decoder_start_token_id
    state = model.encode(src, src_lengths)
    model.decode(state, np.full((2, 1), start, dtype=np.int32))
    histories = [[start], [start]]
    sources = [0, 1]
    state.select(np.array([0, 0, 0, 1, 1, 1]))  # beam 3
    histories = [list(histories[s]) for s in (0, 0, 0, 1, 1, 1)]
    sources = [0, 0, 0, 1, 1, 1]
    for step, rows_kept in enumerate([[2, 0, 1, 5, 5, 3], [0, 1, 3], [2, 2, 0, 1]]):
        ids = random_ids(rng, len(histories), model.vocab_size, _avoid(hf, start))
        logits = model.decode(state, ids[:, None])
        for h, i in zip(histories, ids):
            h.append(int(i))
        state.select(np.array(rows_kept))
        histories = [list(histories[r]) for r in rows_kept]
        sources = [sources[r] for r in rows_kept]
        logits = logits[rows_kept]
    assert state.batch_size == 4
    np.testing.assert_array_equal(state.lengths, [len(h) for h in histories])
    ids = random_ids(rng, 4, model.vocab_size, _avoid(hf, start))
    last = model.decode(state, ids[:, None])
    for i, (h, s) in enumerate(zip(histories, sources)):
        ref = hf_logits(hf, rows[s], np.array(h + [int(ids[i])]))
        assert max_rel_diff(last[i], ref[-1]) < TOL
        assert max_rel_diff(logits[i], ref[-2]) < TOL


def test_batch_of_one_full_length(pair):
    _, model, hf = pair
    rng = np.random.default_rng(5)
    rows, src, src_lengths = _sources(hf, rng, [MAX_POSITIONS])
    (target,) = _targets(model, hf, rng, [MAX_POSITIONS])
    state = model.encode(src, src_lengths)
    logits = model.decode(state, target[None], all_logits=True)
    assert max_rel_diff(logits[0], hf_logits(hf, rows[0], target)) < TOL


def test_positions_past_the_limit_are_refused(pair):
    _, model, hf = pair
    with pytest.raises(ValueError, match="position"):
        model.encode(np.full((1, MAX_POSITIONS + 1), 5, dtype=np.int32), np.array([MAX_POSITIONS + 1]))
    state = model.encode(np.full((2, 3), 5, dtype=np.int32), np.array([3, 2]))
    model.decode(state, np.full((2, MAX_POSITIONS), 5, dtype=np.int32), np.array([MAX_POSITIONS, 4]))
    # A full row may wait (0 tokens) while another one goes on.
    model.decode(state, np.full((2, 1), 5, dtype=np.int32), np.array([0, 1]))
    with pytest.raises(ValueError, match="position"):
        model.decode(state, np.full((2, 1), 5, dtype=np.int32))
    assert state.lengths.tolist() == [MAX_POSITIONS, 5]


def test_thread_count_does_not_change_results(pair):
    _, model, hf = pair
    rng = np.random.default_rng(6)
    _, src, src_lengths = _sources(hf, rng, [9, 4, 12])
    targets = np.stack(_targets(model, hf, rng, [5, 5, 5]))
    runs = []
    for n_threads in (1, 2):
        state = model.encode(src, src_lengths, n_threads)
        runs.append(model.decode(state, targets, all_logits=True))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_bad_decode_arguments_leave_the_state_unchanged(pair):
    _, model, hf = pair
    state = model.encode(np.full((2, 3), 5, dtype=np.int32), np.array([3, 2]))
    with pytest.raises(ValueError, match="rows"):
        model.decode(state, np.full((3, 1), 5, dtype=np.int32))
    with pytest.raises(ValueError, match="token ids"):
        model.decode(state, np.array([[5], [model.vocab_size]], dtype=np.int32))
    with pytest.raises(ValueError, match="lengths"):
        model.decode(state, np.full((2, 2), 5, dtype=np.int32), np.array([1, 3]))
    assert state.lengths.tolist() == [0, 0]


def test_decode_with_attention_gives_last_layer_alignments(pair):
    """A ragged prefix, then single steps: logits as `decode`, and (B, T, S) attention equal to
    the cross-attention of transformers' last layer's first head, zero past each source."""
    _, model, hf = pair
    rng = np.random.default_rng(7)
    rows, src, src_lengths = _sources(hf, rng, [7, 3, 12])
    targets = _targets(model, hf, rng, [5, 4, 6])
    state = model.encode(src, src_lengths)
    counts = np.array([3, 1, 2], dtype=np.int32)
    ids = np.zeros((3, 3), dtype=np.int32)
    for i, n in enumerate(counts):
        ids[i, :n] = targets[i][:n]
    logits, attention = model.decode_with_attention(state, ids, counts)
    assert logits.shape == (3, model.vocab_size) and attention.shape == (3, 3, 12)
    got = [list(attention[i, :n]) for i, n in enumerate(counts)]
    assert not attention[1, 1:].any() and not attention[0, :, 7:].any()
    for step in range(3):
        live = np.array([counts[i] + step < len(targets[i]) for i in range(3)])
        ids = np.array([[targets[i][counts[i] + step] if live[i] else 0] for i in range(3)], dtype=np.int32)
        step_logits, attention = model.decode_with_attention(state, ids, live.astype(np.int32))
        for i in np.flatnonzero(live):
            got[i].append(attention[i, 0])
    for i, r in enumerate(rows):
        n = len(got[i])
        ref = hf_cross_attention(hf, r, targets[i][:n])
        assert max_rel_diff(np.stack(got[i])[:, : len(r)], ref) < TOL
        assert max_rel_diff(step_logits[i], hf_logits(hf, r, targets[i][:n])[-1]) < TOL
