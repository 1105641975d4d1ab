"""Parity scenarios shared by the architecture tests: aiotranslate's logits against transformers' for
one sequence alone (full forward, no padding), through every way `decode` can be driven.

Each check returns the largest error it saw, relative to the scale of the reference logits.
"""

from __future__ import annotations

import numpy as np
import torch

TOL = 1e-4


def hf_logits(model: torch.nn.Module, ids) -> np.ndarray:
    """transformers' logits (T, V) for one sequence alone."""
    with torch.no_grad():
        return model(torch.tensor([list(ids)], dtype=torch.long)).logits[0].float().numpy()


def assert_close(ours: np.ndarray, ref: np.ndarray, tol: float = TOL) -> float:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    err = float(np.abs(ours - ref).max() / np.abs(ref).max())
    assert err <= tol, f"logits differ from transformers by {err:.3g} of their scale (tolerance {tol})"
    return err


def right_padded(rows: list[list[int]], pad: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """ids (B, T) padded with `pad` (an invalid id: padding must never be read) and lengths (B,)."""
    width = max(1, max(len(r) for r in rows))
    ids = np.full((len(rows), width), pad, dtype=np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, np.array([len(r) for r in rows], dtype=np.int32)


def check_full_forward(model, hf, ids: list[int]) -> float:
    """One pass over the whole sequence with all_logits equals transformers' forward."""
    state = model.new_state(1)
    logits = model.decode(state, np.array([ids]), all_logits=True)
    assert logits.shape == (1, len(ids), model.vocab_size) and logits.dtype == np.float32
    assert state.lengths.tolist() == [len(ids)]
    return assert_close(logits[0], hf_logits(hf, ids))


def check_incremental(model, hf, ids: list[int], prefix: int) -> float:
    """Prefill `prefix` tokens, then one token per step: each step's logits equal the full forward's."""
    ref = hf_logits(hf, ids)
    state = model.new_state(1)
    steps = [model.decode(state, np.array([ids[:prefix]]))[0]]
    for t in range(prefix, len(ids)):
        steps.append(model.decode(state, np.array([[ids[t]]]))[0])
    assert state.lengths.tolist() == [len(ids)]
    return assert_close(np.stack(steps), ref[prefix - 1 :])


def check_ragged(model, hf, rows: list[list[int]], prompts: list[int], seed: int = 0) -> float:
    """Rows of different lengths decoded together, right-padded: ragged prompts, then chunks of 0-3
    tokens per row per call (rows at different offsets), every few calls one token or none per row.
    Every valid position of every row equals transformers on that row alone."""
    rng = np.random.default_rng(seed)
    refs = [hf_logits(hf, r) for r in rows]
    state = model.new_state(len(rows), capacity=2)  # small: the caches must grow on the way
    done = list(prompts)
    ids, lengths = right_padded([r[:p] for r, p in zip(rows, prompts)])
    last = model.decode(state, ids, lengths)
    err = max(assert_close(last[i], refs[i][p - 1]) for i, p in enumerate(prompts) if p)
    call = 0
    while any(d < len(r) for d, r in zip(done, rows)):
        most = 1 if call % 3 == 2 else 3
        chunks = [r[d : d + int(rng.integers(0, most + 1))] for d, r in zip(done, rows)]
        ids, lengths = right_padded(chunks)
        logits = model.decode(state, ids, lengths, all_logits=True)
        for i, chunk in enumerate(chunks):
            if chunk:
                err = max(err, assert_close(logits[i, : len(chunk)], refs[i][done[i] : done[i] + len(chunk)]))
            done[i] += len(chunk)
        assert state.lengths.tolist() == done
        call += 1
    # A call giving a row no token still returns the logits after its last one.
    last = model.decode(state, np.zeros((len(rows), 1), np.int32), np.zeros(len(rows), np.int32))
    return max(err, assert_close(last, np.stack([ref[-1] for ref in refs])))


def check_select(model, hf, prompts: list[list[int]], order: list[int], continuations: list[list[int]]) -> float:
    """select() reorders and repeats rows (beam search): each new row continues its source row's cache."""
    state = model.new_state(len(prompts))
    model.decode(state, *right_padded(prompts))
    state.select(np.array(order))
    assert state.batch_size == len(order)
    assert state.lengths.tolist() == [len(prompts[o]) for o in order]
    logits = model.decode(state, *right_padded(continuations), all_logits=True)
    err = 0.0
    for i, (o, cont) in enumerate(zip(order, continuations)):
        ref = hf_logits(hf, prompts[o] + cont)[len(prompts[o]) :]
        err = max(err, assert_close(logits[i, : len(cont)], ref))
    return err
