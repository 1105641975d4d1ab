"""Greedy search and random sampling: one path per row, one token per step.

Each step processes the logits of the live rows, picks a token per row with the sampler (the best
one, or a draw), reports it to the step hook, and drops the rows that finished from the model state
(`state.select`) before the next decode call, so the batch shrinks as sequences end.

`GreedySearch` also lets rows join between steps (continuous batching): `add` appends the rows of
another prefilled state (`state.extend`) with their first logits, and `step` returns the rows that
finished, so that a caller can deliver them at once. A row's tokens depend only on its own logits,
generator and limits, never on the rows beside it: joining changes which rows share a decode call,
not what they decode. Rows added together share their options; rows added apart may differ in the
options that act on one row only (`ROW_OPTIONS`: lengths, start, seed, what is returned), not in how
tokens are chosen (`shared_options` is what they must have in common).

With a model on a GPU, picking the best token (no sampling, no processor changing this step's
logits, no logits returned) runs on the device: only the chosen ids and their scores, (R, 1) each,
come to the host per step instead of the (R, V) logits.

Not here: several hypotheses per example (the caller replicates rows), beam search, the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .. import ops
from ..backends import get_array_module, host_float32, place_like, to_host
from .options import DecodingOptions
from .processors import LogitsProcessors
from .sampling import BestSampler, make_sampler
from .search import (
    Hypothesis,
    Limits,
    Path,
    Row,
    Started,
    StepHook,
    StopCheck,
    decode_step,
    decoder_positions,
    finish,
    report,
    split_started,
)


ROW_OPTIONS = (
    "max_length", "min_length", "return_prefix", "start_returned_unless", "return_end_token", "static_prompt",
    "seed", "return_logits_vocab", "length_penalty",
)  # fmt: skip


def shared_options(options: DecodingOptions) -> DecodingOptions:
    """`options` with the ROW_OPTIONS at their defaults: rows whose options give equal shared
    options may decode in one search."""
    defaults = DecodingOptions()
    return replace(options, **{name: getattr(defaults, name) for name in ROW_OPTIONS})


@dataclass
class Finished:
    """A row that ended: the `tag` its rows were added with, its index in their `Started`."""

    tag: Any
    index: int
    hypothesis: Hypothesis


@dataclass
class _Live:
    """A row being decoded, with what it was added with."""

    tag: Any
    index: int
    row: Row
    path: Path
    limits: Limits
    on_step: StepHook | None
    should_stop: StopCheck | None


class GreedySearch:
    """Rows decoded one token per step; rows may be added between steps."""

    def __init__(self, model, options: DecodingOptions) -> None:
        self.model = model
        self.options = options
        self.processors = LogitsProcessors(options)
        self.sampler = make_sampler(options)
        # Log-probs cost a pass over (R, V): only when scores are returned or rank sampled hypotheses.
        self.with_log_probs = options.return_scores or options.num_hypotheses > 1
        self.on_device = isinstance(self.sampler, BestSampler) and not options.return_logits_vocab
        self.state = None  # holds exactly the live rows, in order
        self._live: list[_Live] = []
        self._logits: np.ndarray | None = None  # (R, V): next-token logits of the live rows
        self._attention: np.ndarray | None = None  # (R, S) or None

    @property
    def num_rows(self) -> int:
        return len(self._live)

    def add(
        self,
        state,
        start: Started,
        *,
        on_step: StepHook | None = None,
        should_stop: StopCheck | None = None,
        tag: Any = None,
        options: DecodingOptions | None = None,
    ) -> list[Finished]:
        """Let the rows of `start` (`state` holds exactly them, prefilled) join at the next step;
        returns those that need no decoding. `options`: these rows' own, if they differ from the
        search's in ROW_OPTIONS (and no others)."""
        if options is not None and shared_options(options) != shared_options(self.options):
            raise ValueError("rows added to a search may differ from it in ROW_OPTIONS only")
        limits = Limits(options or self.options, decoder_positions(self.model))
        live, logits, attention, finished = split_started(state, start, limits)
        done = [Finished(tag, r, h) for r, h in finished.items()]
        if not live:
            return done
        if not self._live:
            self.state, self._logits, self._attention = state, logits, attention
        else:
            if attention is not None or self._attention is not None:
                # Attention rows are as wide as their batch's sources: they cannot mix.
                raise ValueError("rows that return attention cannot join a running search")
            self.state.extend(state)
            xp = get_array_module(self._logits)
            self._logits = xp.concatenate([self._logits, place_like(logits, self._logits)])
        self._live += [
            _Live(tag, r, start.rows[r], start.paths[r], limits, on_step, should_stop) for r in live
        ]
        return done

    def step(self) -> list[Finished]:
        """Choose and report every live row's next token, retire the rows that end, and run the
        decoder once for the others."""
        live, options = self._live, self.options
        can_end = np.array([len(e.path.tokens) >= e.limits.min_new(e.row) for e in live], dtype=bool)
        logits = self._logits  # this step's own: the processors change it in place
        if self.processors.reads_histories:
            logits = host_float32(logits)  # a no-op for host logits
        self.processors.apply(logits, lambda: [e.row.context + list(e.path.tokens) for e in live], can_end)
        if self.with_log_probs and isinstance(self.sampler, BestSampler) and isinstance(logits, np.ndarray):
            ids, values = _best_log_probs(self.sampler, logits, options.n_threads)
        else:
            scores = ops.log_softmax(logits, n_threads=options.n_threads) if self.with_log_probs else logits
            ids, values = self.sampler(scores, 1, [e.row.rng for e in live], n_threads=options.n_threads)
            ids, values = to_host(ids), to_host(values)

        finished, kept, tokens = [], [], []
        for i, e in enumerate(live):
            token = int(ids[i, 0])
            log_prob = float(values[i, 0]) if self.with_log_probs else None
            e.path = e.path.child(
                token,
                e.path.log_prob + (log_prob or 0.0),
                to_host(logits[i]) if e.limits.options.return_logits_vocab else None,
                None if self._attention is None else self._attention[i],
                log_prob,
            )
            is_last = e.limits.is_complete(e.row, e.path)
            stop = report(e.on_step, e.row, e.path, e.limits, log_prob, is_last)
            stop = stop or (not is_last and e.should_stop is not None and e.should_stop(e.row.batch_id))
            if is_last or stop:
                finished.append(Finished(e.tag, e.index, finish(e.row, e.path, e.limits)))
            else:
                kept.append(i)
                tokens.append(token)
        self._live = [live[i] for i in kept]
        if kept:
            if len(kept) < len(live):
                self.state.select(np.array(kept, dtype=np.int32))
            self._logits, self._attention = decode_step(
                self.model, self.state, tokens, options, on_host=not self.on_device
            )
        return finished


def _best_log_probs(sampler: BestSampler, logits: np.ndarray, n_threads: int) -> tuple[np.ndarray, np.ndarray]:
    """The best token of each row of host logits (R, V) and its log-probability, (R, 1) each: the best
    logit minus the row's logsumexp, the token and value that log_softmax(logits) would give, without
    its (R, V) output (two read-only passes over each row instead of three with two writes). A row with
    every token banned (-inf) gets -inf, as from log_softmax."""
    ids, best = sampler(logits, 1, n_threads=n_threads)
    lse = ops.logsumexp(logits, n_threads=n_threads)[:, None]
    with np.errstate(invalid="ignore"):  # -inf - -inf: replaced just below
        return ids, np.where(lse > -np.inf, best - lse, -np.inf)


def greedy_search(
    model,
    state,
    start: Started,
    options: DecodingOptions,
    on_step: StepHook | None = None,
    should_stop: StopCheck | None = None,
) -> list[Hypothesis]:
    """One hypothesis per row of `start`. The state holds exactly the rows of `start`."""
    search = GreedySearch(model, options)
    results: list[Hypothesis | None] = [None] * len(start.rows)
    done = search.add(state, start, on_step=on_step, should_stop=should_stop)
    while True:
        for f in done:
            results[f.index] = f.hypothesis
        if not search.num_rows:
            return results
        done = search.step()
