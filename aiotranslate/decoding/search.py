"""What every search shares: rows, paths, the prefill, a model step, and finishing a hypothesis.

A *row* is one independent search: an example, or one of its hypotheses when they are searched
apart (sampling several hypotheses, `return_alternatives`). Each row has a *context* (the static
prompt and its start tokens, all read by the model in one prefill call) and grows *paths*: the
tokens decoded after the context, with their summed log-probability and, on request, the logits
and attention of each step. Greedy search keeps one path per row, beam search `beam_size`.

Scores follow CTranslate2: a finished path scores sum(log_probs) / length ** length_penalty, where
length counts the decoded tokens, the end token included, and the forced prefix tokens when they
are returned (they are read, not decoded: they add no log-probability), plus the GNMT coverage
penalty when asked for.

Not here: choosing tokens (greedy, beam), the logits processors, sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..backends import host_float32
from ..models.base import DecoderModel, DecoderState
from ..results import GenerationStepResult
from .options import DecodingOptions

StepHook = Callable[[GenerationStepResult], "bool | None"]
"""Called for each emitted token; returning True stops that sequence (streaming and cancellation)."""

StopCheck = Callable[[int], bool]
"""Asked once per decoding step for each live row's batch_id: True stops that example's sequences
(cancellation, deadlines), also in steps where beam search emits nothing."""


class AttentionDecoderModel(DecoderModel, Protocol):
    """Optional model hook for `return_attention` and `coverage_penalty`."""

    def decode_with_attention(
        self, state: DecoderState, ids: np.ndarray, lengths: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`decode`, also returning float32 (B, T, S) attention over the source of every appended
        position (zeros beyond a row's source length)."""
        ...


def supports_attention(model: DecoderModel) -> bool:
    return callable(getattr(model, "decode_with_attention", None))


@dataclass
class DecodingResult:
    """The hypotheses of one example in token ids, best first (`return_alternatives`: in order).

    attention: float32 (T, S) per hypothesis, S the batch's padded source width (zeros beyond this
    example's source, which the API layer trims); logits: float32 (steps, V) per hypothesis.
    """

    hypotheses: list[list[int]]
    scores: list[float] = field(default_factory=list)
    attention: list[np.ndarray] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)


@dataclass
class Row:
    batch_id: int
    hypothesis_id: int
    context: list[int]  # static prompt + start tokens
    prefix: list[int]  # the forced tokens after the start token
    prefix_attention: list[np.ndarray]  # one (S,) row per prefix token, when attention is on
    rng: np.random.Generator | None = None
    bias: tuple[int, ...] = ()  # the tokens biased decoding favours (`DecodingOptions.prefix_bias_beta`)

    def follows_bias(self, path: Path) -> bool:
        """Whether the path's next token is still favoured: it has followed the bias so far."""
        n = len(path.tokens)
        return n < len(self.bias) and path.tokens == self.bias[:n]


@dataclass(frozen=True)
class Path:
    """Tokens decoded after a row's context; `log_prob` is their summed log-probability and
    `token_log_probs` each token's own (None where the search did not compute it)."""

    tokens: tuple[int, ...] = ()
    log_prob: float = 0.0
    logits: tuple[np.ndarray, ...] = ()
    attention: tuple[np.ndarray, ...] = ()
    token_log_probs: tuple[float | None, ...] = ()

    def child(self, token: int, log_prob: float, logits=None, attention=None, token_log_prob=None) -> Path:
        """This path plus `token`; log_prob is the child's *cumulative* log-probability."""
        return Path(
            self.tokens + (int(token),),
            float(log_prob),
            self.logits if logits is None else self.logits + (logits,),
            self.attention if attention is None else self.attention + (attention,),
            self.token_log_probs + (None if token_log_prob is None else float(token_log_prob),),
        )

    def head(self, n: int) -> Path:
        """The path of the first n tokens (for reporting a token of it; logits and attention dropped)."""
        return Path(self.tokens[:n], 0.0, (), (), self.token_log_probs[:n])


@dataclass
class Started:
    """Rows ready for a search: the next-token logits of each row's path (and its attention)."""

    rows: list[Row]
    paths: list[Path]
    logits: np.ndarray  # float32 (R, V)
    attention: np.ndarray | None  # float32 (R, S)
    done: list[bool]  # finished before the search (stopped by the hook)


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float
    attention: list[np.ndarray]
    logits: list[np.ndarray]
    path: Path = field(default_factory=Path)  # what was decoded (end token included), for the hook


class Limits:
    """Per-row length budgets in decoded tokens; see `options` for the counting rule. `positions`:
    how many tokens a row of the model may read (`decoder_positions`), None: no limit. A row stops
    there as at max_length, rather than failing the call at its next step."""

    def __init__(self, options: DecodingOptions, positions: int | None = None) -> None:
        self.options = options
        self.positions = positions
        self.end_ids = frozenset(options.end_ids)

    def returned_prefix(self, row: Row) -> int:
        return len(row.prefix) if self.options.return_prefix else 0

    def max_new(self, row: Row) -> int:
        budget = self.options.max_length - self.returned_prefix(row)
        if self.positions is not None:  # the context and every decoded token but the last are read
            budget = min(budget, self.positions - len(row.context) + 1)
        return budget

    def min_new(self, row: Row) -> int:
        return self.options.min_length - self.returned_prefix(row)

    def can_end(self, rows: Sequence[Row], paths: Sequence[Path]) -> np.ndarray:
        return np.array([len(p.tokens) >= self.min_new(r) for r, p in zip(rows, paths)], dtype=bool)

    def is_complete(self, row: Row, path: Path) -> bool:
        """No more tokens for this path: it ended, or it has used its budget."""
        return bool(path.tokens) and path.tokens[-1] in self.end_ids or len(path.tokens) >= self.max_new(row)

    def scored_length(self, row: Row, decoded: int) -> int:
        """The length that normalizes the score of a path of `decoded` tokens (module docstring)."""
        return min(self.returned_prefix(row), self.options.max_length) + decoded

    def step(self, row: Row, path: Path) -> int:
        """Position of the path's last token in the returned sequence (the step results' `step`)."""
        return self.returned_prefix(row) + len(path.tokens) - 1


def decoder_positions(model) -> int | None:
    """How many tokens a row of `model`'s decoder may read (its position table); None: no limit."""
    if hasattr(model, "max_target_positions"):  # an encoder-decoder: max_positions is its encoder's
        return model.max_target_positions
    return getattr(model, "max_positions", None)


def run_decoder(model, state, ids, lengths, with_attention: bool, on_host: bool = True):
    """model.decode, and (B, T, S) attention when asked for and the model can give it (else None).

    The searches read float32 logits on the host: a model on a GPU hands over its (B, V) logits
    here, once per step (the device-to-host copy of a step, with the attention if asked). With
    on_host=False they stay where the model made them (greedy search picks the best token there)."""
    if with_attention and supports_attention(model):
        logits, attention = model.decode_with_attention(state, ids, lengths)
    else:
        logits, attention = model.decode(state, ids, lengths), None
    return (host_float32(logits) if on_host else logits), attention


def decode_step(model, state, tokens: Sequence[int], options: DecodingOptions, on_host: bool = True):
    """Append one token to every row: next-token logits (R, V) and attention (R, S) or None."""
    ids = np.asarray(tokens, dtype=np.int32).reshape(-1, 1)
    logits, attention = run_decoder(model, state, ids, None, wants_attention(options), on_host)
    return logits, None if attention is None else attention[:, 0]


def wants_attention(options: DecodingOptions) -> bool:
    return options.return_attention or options.coverage_penalty != 0


def pad(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """int32 (B, T) right-padded with zeros, int32 (B,) lengths."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int32)
    ids = np.zeros((len(sequences), int(lengths.max(initial=0))), dtype=np.int32)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = s
    return ids, lengths


def prefill(
    model: DecoderModel, state: DecoderState, start_tokens: Sequence[Sequence[int]], options: DecodingOptions
) -> Started:
    """Read every row's static prompt and start tokens in one decode call (ragged lengths). A state
    whose rows all hold as many tokens as the static prompt holds it already (a cached copy:
    api.static_prompts): then only the start tokens are read. Biased decoding reads the first
    start token alone: the others are the row's bias."""
    if any(len(tokens) == 0 for tokens in start_tokens):
        raise ValueError("every example needs at least a start token")
    static = list(options.static_prompt)
    read_tokens = 1 if options.is_biased else None
    contexts = [static + [int(t) for t in tokens[:read_tokens]] for tokens in start_tokens]
    lengths_held = getattr(state, "lengths", None)
    held = len(static) if static and lengths_held is not None and (lengths_held == len(static)).all() else 0
    ids, lengths = pad([context[held:] for context in contexts])
    logits, attention_all = run_decoder(model, state, ids, lengths, wants_attention(options))
    rows, attention = [], None
    if attention_all is not None:
        attention = attention_all[np.arange(len(contexts)), lengths - 1]
    for b, context in enumerate(contexts):
        prefix = context[len(static) + 1 :]
        # The attention that predicted prefix token j is that of the position reading the token before
        # it (positions of this call: the context less the `held` tokens).
        read = attention_all[b, len(static) - held : len(context) - 1 - held] if attention_all is not None else []
        prefix_attention = list(read)
        bias = tuple(int(t) for t in start_tokens[b][1:]) if options.is_biased else ()
        rows.append(Row(b, 0, context, prefix, prefix_attention, bias=bias))
    n = len(rows)
    return Started(rows, [Path()] * n, logits, attention, [False] * n)


def split_started(state: DecoderState, start: Started, limits: Limits):
    """Finish the rows of `start` that need no decoding and drop them from the state.

    Returns (live row indices, their logits, their attention or None, {row: hypothesis} of the others).
    """
    live, finished = [], {}
    for r, (row, path) in enumerate(zip(start.rows, start.paths)):
        if start.done[r] or limits.is_complete(row, path):
            finished[r] = finish(row, path, limits)
        else:
            live.append(r)
    if finished:
        state.select(np.array(live, dtype=np.int32))
    attention = None if start.attention is None else start.attention[live]
    return live, start.logits[live], attention, finished


def coverage_penalty(attention: Sequence[np.ndarray], beta: float) -> float:
    """GNMT's coverage penalty: beta * sum_j log(min(sum_i a_ij, 1)) over attended source tokens."""
    if not attention:
        return 0.0
    coverage = np.sum(np.stack(attention).astype(np.float64), axis=0)
    covered = coverage[coverage > 0]
    return beta * float(np.sum(np.log(np.minimum(covered, 1.0))))


def normalized_score(log_prob: float, length: int, options: DecodingOptions) -> float:
    return log_prob / length**options.length_penalty if length else log_prob


def finish(row: Row, path: Path, limits: Limits) -> Hypothesis:
    """The returned hypothesis of a finished path: prefix (if returned), tokens, end token (if asked)."""
    options = limits.options
    tokens = list(path.tokens)
    attention = list(path.attention)
    if tokens and tokens[-1] in limits.end_ids and not options.return_end_token:
        tokens.pop()
        attention = attention[: len(tokens)]
    if options.return_prefix:
        # A prefix longer than max_length is cut there (CTranslate2 forces it until the last step).
        tokens = row.prefix[: options.max_length] + tokens
        attention = row.prefix_attention[: options.max_length] + attention
        start = row.context[-len(row.prefix) - 1]
        if options.start_returned_unless is not None and start not in options.start_returned_unless:
            # Neither scored nor counted, as CTranslate2's Generator returns it (a decoder-only model:
            # no attention rows to align).
            tokens.insert(0, start)
    score = normalized_score(path.log_prob, limits.scored_length(row, len(path.tokens)), options)
    if options.coverage_penalty:
        score += coverage_penalty(attention, options.coverage_penalty)
    return Hypothesis(tokens, score, attention, list(path.logits), path)


def report(on_step: StepHook | None, row: Row, path: Path, limits: Limits, log_prob, is_last: bool) -> bool:
    """Send the path's last token to the hook; True when the hook asks to stop."""
    if on_step is None:
        return False
    result = GenerationStepResult(
        step=limits.step(row, path),
        batch_id=row.batch_id,
        token_id=path.tokens[-1],
        hypothesis_id=row.hypothesis_id,
        log_prob=None if log_prob is None else float(log_prob),
        is_last=is_last,
        logits=path.logits[-1] if path.logits else None,
    )
    return bool(on_step(result))
