"""The decoding entry point: prefill, pick a search, run it, gather the hypotheses per example.

    decode(model, state, start_tokens, options, on_step=None, should_stop=None) -> list[DecodingResult]

`state` is started (the encoder ran, or an empty decoder-only state) and holds one row per example;
`start_tokens[b]` is what example b's decoder reads before the first decoded token: the decoder
start token followed by a forced prefix (Translator `target_prefix`; only favoured, not forced,
with `options.prefix_bias_beta`), or a prompt (Generator). The first token is returned only as
`options.start_returned_unless` says; a forced prefix is returned when `options.return_prefix`.

Several hypotheses per example come from beam search, from sampling (the example's row is
replicated, each copy samples its own path), or from `return_alternatives`. The state is left with
whatever rows were still live when decoding ended; callers discard it.

`begin` and `collect` are decode's first and last parts, for callers that run the greedy search
themselves (continuous batching: `greedy.GreedySearch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from .alternatives import expand_alternatives
from .beam import beam_search
from .greedy import greedy_search
from .options import DecodingOptions
from .sampling import row_generators
from .search import DecodingResult, Hypothesis, Started, StepHook, StopCheck, prefill, supports_attention


def decode(
    model,
    state,
    start_tokens: Sequence[Sequence[int]],
    options: DecodingOptions,
    on_step: StepHook | None = None,
    should_stop: StopCheck | None = None,
) -> list[DecodingResult]:
    """Decode every example of the batch; see the module docstring."""
    if len(start_tokens) == 0:
        return []
    start = begin(model, state, start_tokens, options, on_step, should_stop)
    if options.beam_size == 1 and not options.is_biased:
        per_row = [[h] for h in greedy_search(model, state, start, options, on_step, should_stop)]
    else:
        per_row_hypotheses = 1 if options.return_alternatives else options.num_hypotheses
        per_row = beam_search(model, state, start, options, per_row_hypotheses, on_step, should_stop)
    return collect(model, options, len(start_tokens), [(row.batch_id, h) for row, h in zip(start.rows, per_row)])


def begin(
    model,
    state,
    start_tokens: Sequence[Sequence[int]],
    options: DecodingOptions,
    on_step: StepHook | None = None,
    should_stop: StopCheck | None = None,
    seed_ids: Sequence[int] | None = None,
) -> Started:
    """The rows a search starts from: prefilled, expanded into alternatives or replicated into
    hypotheses, each with its random generator when sampling. A row draws from a generator keyed
    by (seed_ids[batch_id] (default: batch_id), hypothesis_id): give each example its index in its
    own request and it samples the same whatever batch it is decoded in."""
    if options.coverage_penalty != 0 and not supports_attention(model):
        raise ValueError("coverage_penalty needs attention weights, which this model does not return")
    start = prefill(model, state, start_tokens, options)
    if options.return_alternatives:
        start = expand_alternatives(model, state, start, options, on_step, should_stop)
    elif options.beam_size == 1 and options.num_hypotheses > 1 and not options.is_biased:
        start = _replicate(state, start, options.num_hypotheses)
    if options.is_sampling:
        ids = range(len(start_tokens)) if seed_ids is None else seed_ids
        keys = [(ids[row.batch_id], row.hypothesis_id) for row in start.rows]
        for row, rng in zip(start.rows, row_generators(options.seed, keys)):
            row.rng = rng
    return start


def collect(
    model, options: DecodingOptions, num_examples: int, found: Iterable[tuple[int, list[Hypothesis]]]
) -> list[DecodingResult]:
    """The results of examples 0..num_examples-1 from (example, hypotheses of a row) pairs, the
    rows in their order (a row's hypothesis_id order: ties in score keep it)."""
    hypotheses: list[list[Hypothesis]] = [[] for _ in range(num_examples)]
    for b, found_here in found:
        hypotheses[b].extend(found_here)
    with_attention = options.return_attention and supports_attention(model)
    return [_result(h, options, with_attention) for h in hypotheses]


def _replicate(state, start: Started, n: int) -> Started:
    """Each row -> n rows (hypothesis ids 0..n-1), in the state too."""
    parents = np.repeat(np.arange(len(start.rows)), n)
    state.select(parents.astype(np.int32))
    rows = [replace(row, hypothesis_id=j) for row in start.rows for j in range(n)]
    return Started(
        rows,
        [start.paths[p] for p in parents],
        start.logits[parents],
        None if start.attention is None else start.attention[parents],
        [start.done[p] for p in parents],
    )


def _result(found: list[Hypothesis], options: DecodingOptions, with_attention: bool) -> DecodingResult:
    if not options.return_alternatives:  # alternatives keep the order of their first tokens
        found = sorted(found, key=lambda h: h.score, reverse=True)[: options.num_hypotheses]
    return DecodingResult(
        hypotheses=[h.tokens for h in found],
        scores=[h.score for h in found] if options.return_scores else [],
        attention=[_stack(h.attention) for h in found] if with_attention else [],
        logits=[_stack(h.logits) for h in found] if options.return_logits_vocab else [],
    )


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32)
