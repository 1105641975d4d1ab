"""Beam search: `beam_size` paths per row, finished hypotheses collected until the row is done.

One step, per row (the beams of a row are consecutive rows of the model state):
  1. process the logits of every beam, log-softmax, add each beam's cumulative log-prob;
  2. take C = max(2, 1 + len(end_ids)) * beam_size candidates over beam_size * V (the sampler: best
     or drawn), enough that beam_size of them do not end even if every beam proposes every end token;
  3. a candidate among the first beam_size that ends (end token, or the last allowed step) becomes a
     finished hypothesis; the best beam_size candidates that do not end become the next beams;
  4. the row is done at its last step, when the hook asks, or by the finishing rule below.
The first step starts from a single path per row (the prefill), so it takes the candidates of that
path only and `state.select` expands the row to beam_size beams; later selects follow the chosen
parents and drop the rows that are done.

Finishing rule. CTranslate2 branches on the length penalty and transformers on `early_stopping`:
  * length_penalty == 0 (and no coverage penalty): scores only decrease, so a row is done when it has
    `num_hypotheses` finished hypotheses and no beam scores above the num_hypotheses-th best of them:
    the exact form of CTranslate2's early exit. Patience plays no part (as in CTranslate2).
  * otherwise: done when round(beam_size * patience) hypotheses are finished (CTranslate2's rule),
    or when at least max(beam_size, num_hypotheses) are and the best beam, scored at its current
    length, does not beat the worst of the best max(beam_size, num_hypotheses) (transformers'
    heuristic).
Mapping from transformers' `generate` (same length_penalty; both return the best num_hypotheses):
  early_stopping=True  <-> patience=1;  early_stopping=False <-> patience=inf (identical results);
  length_penalty=0 with early_stopping=False <-> length_penalty=0 (same hypotheses, found sooner).
  early_stopping="never", and early_stopping=True with length_penalty=0, have no equivalent.
Streaming. Beams are revised, so the step hook sees only tokens that can no longer change (CTranslate2
refuses streaming with beam search): the prefix that every live beam and the best finished hypothesis
share, as soon as they share it (the final best descends from a live beam or is that hypothesis, and
finished hypotheses below the best can never win), then the rest of the best hypothesis when the row
is done, its last token with is_last. The tokens reported for a row are thus exactly the best
hypothesis's path (hypothesis_id 0). `should_stop` is asked every step, since a step may report
nothing; it, or the hook returning True, finishes the row at once with its current beams as
hypotheses (cancellation and deadlines), and nothing more is reported for it.
CTranslate2's extra penalty on end tokens proposed by secondary beams right after a forced prefix
is not applied (transformers has none; here the prefix is prefilled, so all beams start from one path).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import ops
from .options import DecodingOptions
from .processors import LogitsProcessors
from .sampling import make_sampler
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
    normalized_score,
    report,
    split_started,
)


class _Beams:
    """The beams and finished hypotheses of one row, and how many tokens of it were reported."""

    def __init__(self, row: Row, path: Path) -> None:
        self.row = row
        self.paths = [path]
        self.finished: list[Hypothesis] = []
        self.best: Hypothesis | None = None  # the best of `finished`
        self.reported = len(path.tokens)  # tokens of the path before the search were reported already

    def add_finished(self, hypothesis: Hypothesis) -> None:
        self.finished.append(hypothesis)
        if self.best is None or hypothesis.score > self.best.score:
            self.best = hypothesis

    def report_upto(self, path: Path, n: int, on_step: StepHook, limits: Limits, is_last: bool = False) -> bool:
        """Report the tokens of `path` after those reported, up to its n-th; True (and no further
        token reported) when the hook asks to stop."""
        for i in range(self.reported + 1, n + 1):
            log_prob = path.token_log_probs[i - 1] if limits.options.return_scores else None
            self.reported = i
            if report(on_step, self.row, path.head(i), limits, log_prob, is_last and i == n):
                return True
        return False

    def shared(self, running: list[tuple[int, Path]]) -> int:
        """Length of the prefix that the running beams and the best finished hypothesis share."""
        paths = [child.tokens for _, child in running]
        if self.best is not None:
            paths.append(self.best.path.tokens)
        n, first = self.reported, paths[0]
        end = min(len(p) for p in paths)
        while n < end and all(p[n] == first[n] for p in paths):
            n += 1
        return n


def beam_search(
    model,
    state,
    start: Started,
    options: DecodingOptions,
    num_hypotheses: int,
    on_step: StepHook | None = None,
    should_stop: StopCheck | None = None,
) -> list[list[Hypothesis]]:
    """The best `num_hypotheses` hypotheses of each row of `start`, best first."""
    limits = Limits(options, decoder_positions(model))
    processors = LogitsProcessors(options)
    sampler = make_sampler(options)
    k = options.beam_size
    num_candidates = max(2, 1 + len(options.end_ids)) * k
    is_done = _FinishingRule(options, num_hypotheses)

    groups = [_Beams(row, path) for row, path in zip(start.rows, start.paths)]
    live, logits, attention, finished = split_started(state, start, limits)
    for g, hypothesis in finished.items():
        groups[g].add_finished(hypothesis)
    cumulative = np.array([groups[g].paths[0].log_prob for g in live], dtype=np.float32)
    width = 1

    while live:
        beam_rows = [groups[g].row for g in live for _ in range(width)]
        beam_paths = [p for g in live for p in groups[g].paths]
        processors.apply(  # in place: the logits of this step are ours
            logits,
            lambda: [row.context + list(p.tokens) for row, p in zip(beam_rows, beam_paths)],
            limits.can_end(beam_rows, beam_paths),
        )
        log_probs = ops.log_softmax(logits, n_threads=options.n_threads)
        if options.is_biased:
            _favour_bias(log_probs, beam_rows, beam_paths, options.prefix_bias_beta)
        vocab = log_probs.shape[1]
        total = (log_probs + cumulative[:, None]).reshape(len(live), width * vocab)
        n = min(num_candidates, width * vocab)
        flat, scores = sampler(total, n, [groups[g].row.rng for g in live], n_threads=options.n_threads)
        origins, tokens = flat // vocab, flat % vocab

        parents, next_tokens, next_scores, next_live = [], [], [], []
        for i, g in enumerate(live):
            group = groups[g]
            length = len(group.paths[0].tokens) + 1
            last_step = length >= limits.max_new(group.row)
            running: list[tuple[int, Path]] = []  # (parent beam, child path)
            for c in range(n):
                score = float(scores[i, c])
                if not np.isfinite(score):
                    break  # candidates are sorted: the rest are banned tokens or dead beams
                beam = i * width + int(origins[i, c])
                token = int(tokens[i, c])
                ends = token in limits.end_ids or last_step
                if (ends and c >= k) or (not ends and len(running) == k):
                    continue  # only the first k candidates may finish; k beams are enough
                child = beam_paths[beam].child(
                    token,
                    score,
                    logits[beam] if options.return_logits_vocab else None,
                    None if attention is None else attention[beam],
                    float(log_probs[beam, token]),
                )
                if ends:
                    group.add_finished(finish(group.row, child, limits))
                else:
                    running.append((beam, child))
            done = last_step or not running or is_done(group, running, limits.scored_length(group.row, length))
            stop = False
            if not done:
                stop = should_stop is not None and should_stop(group.row.batch_id)
                if not stop and on_step is not None:
                    stop = group.report_upto(running[0][1], group.shared(running), on_step, limits)
                if stop:  # from outside: the current beams become hypotheses, as at a last step
                    for _, child in running:
                        group.add_finished(finish(group.row, child, limits))
                    done = True
            if done:
                group.finished.sort(key=lambda h: h.score, reverse=True)
                del group.finished[num_hypotheses:]
                if not stop and on_step is not None and group.finished:
                    best = group.finished[0].path
                    group.report_upto(best, len(best.tokens), on_step, limits, is_last=True)
                continue
            # Fewer than k candidates left (a heavily banned vocabulary): dead beams, -inf, fill in.
            dead = (running[0][0], replace(running[0][1], log_prob=-np.inf))
            running += [dead] * (k - len(running))
            group.paths = [child for _, child in running]
            parents += [beam for beam, _ in running]
            next_tokens += [child.tokens[-1] for _, child in running]
            next_scores += [child.log_prob for _, child in running]
            next_live.append(g)
        if not next_live:
            break
        state.select(np.array(parents, dtype=np.int32))
        live, width = next_live, k
        cumulative = np.array(next_scores, dtype=np.float32)
        logits, attention = decode_step(model, state, next_tokens, options)
    return [group.finished for group in groups]


def _favour_bias(log_probs: np.ndarray, rows: list[Row], paths: list[Path], beta: float) -> None:
    """Biased decoding, in place: log((1 - beta) * p + beta * onehot(next bias token)) for the beams
    that have followed their row's bias so far (CTranslate2's BiasedDecoder); the others keep log p."""
    for beam, (row, path) in enumerate(zip(rows, paths)):
        if row.follows_bias(path):
            favoured = row.bias[len(path.tokens)]
            mixed = (1 - beta) * np.exp(log_probs[beam].astype(np.float64))
            mixed[favoured] += beta
            with np.errstate(divide="ignore"):  # banned tokens: probability 0, log -inf
                log_probs[beam] = np.log(mixed)


class _FinishingRule:
    """The finishing rule of the module docstring, checked after a step that made beams whose scores
    `length` normalizes (`Limits.scored_length`)."""

    def __init__(self, options: DecodingOptions, num_hypotheses: int) -> None:
        self.options = options
        self.penalized = options.length_penalty != 0 or options.coverage_penalty != 0
        # How many of the best finished hypotheses no beam should be able to beat any more.
        self.reference = max(options.beam_size, num_hypotheses) if self.penalized else num_hypotheses

    def __call__(self, group: _Beams, running: list[tuple[int, Path]], length: int) -> bool:
        finished = len(group.finished)
        if self.penalized and finished >= self.options.max_candidates:
            return True
        if finished < self.reference:
            return False
        best_beam = normalized_score(max(child.log_prob for _, child in running), length, self.options)
        reference_score = sorted((h.score for h in group.finished), reverse=True)[self.reference - 1]
        return best_beam <= reference_score
