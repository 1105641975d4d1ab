"""`return_alternatives`: the num_hypotheses best tokens at the first free position, each continued.

CTranslate2's semantics: after the forced prefix, the num_hypotheses most likely next tokens are
expanded (never an end token there), those below `min_alternative_expansion_prob` dropped (with all
less likely ones), and each alternative becomes its own row that the search continues with one
hypothesis. Unlike CTranslate2 the expansion token is part of the path, so an alternative's score is
the normalized log-probability of all its decoded tokens.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import ops
from .options import DecodingOptions
from .processors import LogitsProcessors
from .search import Limits, Started, StepHook, StopCheck, decoder_positions, report, run_decoder, wants_attention


def expand_alternatives(
    model,
    state,
    start: Started,
    options: DecodingOptions,
    on_step: StepHook | None = None,
    should_stop: StopCheck | None = None,
) -> Started:
    """Rows of `start` (one per example, state rows alike) -> one row per kept alternative."""
    limits = Limits(options, decoder_positions(model))
    logits = np.array(start.logits, dtype=np.float32)
    histories = [row.context for row in start.rows]
    LogitsProcessors(options)(logits, histories, np.zeros(len(histories), dtype=bool))
    log_probs = ops.log_softmax(logits, n_threads=options.n_threads)
    values, ids = ops.topk(log_probs, min(options.num_hypotheses, logits.shape[1]), n_threads=options.n_threads)

    parents, rows, paths, done = [], [], [], []
    for b, row in enumerate(start.rows):
        if limits.max_new(row) <= 0:  # the prefix fills the budget: nothing to expand
            parents.append(b)
            rows.append(row)
            paths.append(start.paths[b])
            done.append(True)
            continue
        for j in range(values.shape[1]):
            if not np.exp(values[b, j]) >= options.min_alternative_expansion_prob:
                break
            alternative = replace(row, hypothesis_id=j)
            path = start.paths[b].child(
                int(ids[b, j]),
                float(values[b, j]),
                logits[b] if options.return_logits_vocab else None,
                None if start.attention is None else start.attention[b],
                float(values[b, j]),
            )
            is_last = limits.is_complete(alternative, path)
            log_prob = float(values[b, j]) if options.return_scores else None
            stop = report(on_step, alternative, path, limits, log_prob, is_last)
            stop = stop or (not is_last and should_stop is not None and should_stop(row.batch_id))
            parents.append(b)
            rows.append(alternative)
            paths.append(path)
            done.append(is_last or stop)

    state.select(np.array(parents, dtype=np.int32))
    # Finished rows read nothing (length 0) and leave the search before its first step.
    reading = ~np.array(done, dtype=bool)
    if not reading.any():
        return Started(rows, paths, np.zeros((len(rows), logits.shape[1]), np.float32), None, done)
    last = np.array([[p.tokens[-1] if p.tokens else 0] for p in paths], dtype=np.int32)
    next_logits, attention = run_decoder(model, state, last, reading.astype(np.int32), wants_attention(options))
    return Started(rows, paths, next_logits, None if attention is None else attention[:, 0], done)
