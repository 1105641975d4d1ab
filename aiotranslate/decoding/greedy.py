"""Greedy search and random sampling: one path per row, one token per step.

Each step processes the logits of the live rows, picks a token per row with the sampler (the best
one, or a draw), reports it to the step hook, and drops the rows that finished from the model state
(`state.select`) before the next decode call, so the batch shrinks as sequences end.

With a model on a GPU, picking the best token (no sampling, no processor changing this step's
logits, no logits returned) runs on the device: only the chosen ids and their scores, (R, 1) each,
come to the host per step instead of the (R, V) logits.

Not here: several hypotheses per example (the caller replicates rows), beam search.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..backends import host_float32, to_host
from .options import DecodingOptions
from .processors import LogitsProcessors
from .sampling import BestSampler, make_sampler
from .search import Hypothesis, Limits, Started, StepHook, decode_step, finish, report, split_started


def greedy_search(
    model, state, start: Started, options: DecodingOptions, on_step: StepHook | None = None
) -> list[Hypothesis]:
    """One hypothesis per row of `start`. The state holds exactly the rows of `start`."""
    limits = Limits(options)
    processors = LogitsProcessors(options)
    sampler = make_sampler(options)
    # Log-probs cost a pass over (R, V): only when scores are returned or rank sampled hypotheses.
    with_log_probs = options.return_scores or options.num_hypotheses > 1
    on_device = isinstance(sampler, BestSampler) and not options.return_logits_vocab
    rows, paths = start.rows, list(start.paths)
    live, logits, attention, finished = split_started(state, start, limits)
    results: list[Hypothesis | None] = [finished.get(r) for r in range(len(rows))]

    while live:
        live_rows = [rows[r] for r in live]
        live_paths = [paths[r] for r in live]
        can_end = limits.can_end(live_rows, live_paths)
        if processors.changes(can_end):
            logits = host_float32(logits)  # the processors work on the host (a no-op for host logits)
        logits = processors.processed(
            logits, lambda: [row.context + list(p.tokens) for row, p in zip(live_rows, live_paths)], can_end
        )
        scores = ops.log_softmax(logits, n_threads=options.n_threads) if with_log_probs else logits
        ids, values = sampler(scores, 1, [row.rng for row in live_rows], n_threads=options.n_threads)
        ids, values = to_host(ids), to_host(values)

        next_live, next_tokens = [], []
        for i, (r, row) in enumerate(zip(live, live_rows)):
            token = int(ids[i, 0])
            log_prob = float(values[i, 0]) if with_log_probs else None
            path = paths[r].child(
                token,
                paths[r].log_prob + (log_prob or 0.0),
                logits[i] if options.return_logits_vocab else None,
                None if attention is None else attention[i],
            )
            paths[r] = path
            is_last = limits.is_complete(row, path)
            stop = report(on_step, row, path, limits, log_prob, is_last)
            if is_last or stop:
                results[r] = finish(row, path, limits)
            else:
                next_live.append(r)
                next_tokens.append(token)
        if not next_live:
            break
        if len(next_live) < len(live):
            state.select(np.flatnonzero(np.isin(live, next_live)).astype(np.int32))
        live = next_live
        logits, attention = decode_step(model, state, next_tokens, options, on_host=not on_device)
    return results

