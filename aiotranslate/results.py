"""The public result types, with CTranslate2's names and fields.

Arrays replace CTranslate2's nested lists where a result holds numbers per position: `attention`
is one float32 (T, S) array per hypothesis (a row per returned token, a column per source token) and
`logits` one float32 (T, V) array per hypothesis (a row per decoding step). Lists are empty when the
option that asks for them (`return_scores`, `return_attention`, `return_logits_vocab`) is off.

Decoding produces token ids only; the API layer maps ids to token strings and fills `token`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TranslationResult:
    """The hypotheses of one source, best first."""

    hypotheses: list[list[str]]
    scores: list[float] = field(default_factory=list)
    attention: list[np.ndarray] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)


@dataclass
class GenerationResult:
    """The sequences generated from one prompt, best first."""

    sequences: list[list[str]]
    sequences_ids: list[list[int]]
    scores: list[float] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class GenerationStepResult:
    """One decoded token, as the per-step callback and the token streams report it.

    step: position of the token in the returned sequence; batch_id: the example in the batch;
    hypothesis_id: the sequence of that example (num_hypotheses > 1); log_prob: the token's
    log-probability when scores are returned, else None; is_last: the sequence ends here; logits:
    with return_logits_vocab, the float32 (V,) row of the step that chose the token, else None.
    """

    step: int
    batch_id: int
    token_id: int
    hypothesis_id: int = 0
    token: str | None = None
    log_prob: float | None = None
    is_last: bool = False
    text: str | None = None  # streams: the text this token completes ("" while it completes none)
    logits: np.ndarray | None = None


@dataclass
class ScoringResult:
    """Per-token log-probabilities of one scored sequence."""

    tokens: list[str]
    log_probs: list[float]
