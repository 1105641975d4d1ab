"""The options of one decoding call, in token ids, named as CTranslate2 names them.

This module holds the option values and their validation; it does not know tokens as strings. The
API layer maps its public arguments onto these fields:

    Translator / Generator argument          DecodingOptions field
    ---------------------------------------  ----------------------------------------------------
    end_token (str, list[str], list[int])    end_ids (ids; the model's EOS by default)
    disable_unk=True                         disable_ids=(unk_id,)
    suppress_sequences (token lists)         suppress_sequences (id tuples)
    max_decoding_length / max_length         max_length
    min_decoding_length / min_length         min_length
    target_prefix (Translator)               the tokens after the start token in `start_tokens`
    prefix_bias_beta (Translator)            prefix_bias_beta: those tokens bias the search, unforced
    include_prompt_in_result (Generator)     return_prefix, and start_returned_unless=(bos_id,)
    max_input_length                         `truncate_input`, applied before encoding/prefill

Lengths count the tokens of the returned hypothesis (CTranslate2's rule): with `return_prefix`
the forced prefix counts towards `max_length` and `min_length`, without it only generated tokens do.
The end token counts towards `max_length` (it is a decoding step), not towards `min_length` (which
forbids the end token until that many tokens are there).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Sequence
from dataclasses import dataclass


_INTEGERS = ("beam_size", "num_hypotheses", "sampling_topk", "no_repeat_ngram_size", "max_length", "min_length",
             "n_threads")
_NUMBERS = ("patience", "length_penalty", "coverage_penalty", "min_alternative_expansion_prob", "sampling_topp",
            "sampling_temperature", "repetition_penalty", "prefix_bias_beta")


@dataclass(frozen=True)
class DecodingOptions:
    """How to search. Defaults are CTranslate2's `DecodingOptions` defaults (beam_size 1, i.e. greedy)."""

    # Search.
    beam_size: int = 1
    patience: float = 1.0  # beam: stop once round(beam_size * patience) hypotheses are finished
    length_penalty: float = 1.0  # score = sum(log_probs) / length ** length_penalty
    coverage_penalty: float = 0.0  # GNMT coverage; needs a model that returns attention
    num_hypotheses: int = 1
    return_alternatives: bool = False
    min_alternative_expansion_prob: float = 0.0
    # > 0: the tokens after the start token are not forced but favoured (CTranslate2's biased
    # decoding, a beam search): while a beam follows them, its next token's probabilities are
    # (1 - beta) * p + beta * onehot(the prefix's next token).
    prefix_bias_beta: float = 0.0

    # Sampling (beam_size 1: the next token; beam_size > 1: the beam candidates).
    sampling_topk: int = 1  # 1 = best token (no sampling); 0 = the whole vocabulary
    sampling_topp: float = 1.0
    sampling_temperature: float = 1.0
    seed: int | None = None  # rows draw from their own generators: results do not depend on batching

    # Logits processors.
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    disable_ids: tuple[int, ...] = ()
    suppress_sequences: tuple[tuple[int, ...], ...] = ()

    # Stopping and what is returned.
    end_ids: tuple[int, ...] = ()
    return_end_token: bool = False
    max_length: int = 256
    min_length: int = 0
    return_prefix: bool = True
    # With return_prefix, the hypotheses also open with the row's start token unless it is one of
    # these ids; None: never (a Translator's start token is the model's decoder start).
    start_returned_unless: tuple[int, ...] | None = None
    static_prompt: tuple[int, ...] = ()
    cache_static_prompt: bool = True  # the engine may keep the static prompt's state (api.static_prompts)
    return_scores: bool = False
    return_attention: bool = False
    return_logits_vocab: bool = False

    # Threads of each kernel call (the worker's intra_threads).
    n_threads: int = 1

    def __post_init__(self) -> None:
        # Normalize sequences to tuples so that options stay hashable and immutable.
        object.__setattr__(self, "end_ids", tuple(int(i) for i in self.end_ids))
        object.__setattr__(self, "disable_ids", tuple(int(i) for i in self.disable_ids))
        object.__setattr__(self, "static_prompt", tuple(int(i) for i in self.static_prompt))
        if self.start_returned_unless is not None:
            object.__setattr__(self, "start_returned_unless", tuple(int(i) for i in self.start_returned_unless))
        object.__setattr__(
            self, "suppress_sequences", tuple(tuple(int(i) for i in s) for s in self.suppress_sequences)
        )
        self._validate()

    @property
    def max_candidates(self) -> float:
        """Finished hypotheses after which beam search stops (inf: stop only on the bound)."""
        return math.inf if math.isinf(self.patience) else round(self.beam_size * self.patience)

    @property
    def is_sampling(self) -> bool:
        return self.sampling_topk != 1 and self.sampling_temperature != 0

    @property
    def is_biased(self) -> bool:
        """Biased decoding (`prefix_bias_beta`): always a beam search, as CTranslate2 runs it."""
        return self.prefix_bias_beta > 0

    def _validate(self) -> None:
        for name in _INTEGERS:
            if not isinstance(getattr(self, name), numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {getattr(self, name)!r}")
        for name in _NUMBERS:
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or math.isnan(value):
                raise (ValueError if isinstance(value, numbers.Real) else TypeError)(
                    f"{name} must be a number, got {value!r}"
                )
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if not self.patience > 0:
            raise ValueError(f"patience must be > 0, got {self.patience}")
        if self.num_hypotheses < 1:
            raise ValueError(f"num_hypotheses must be >= 1, got {self.num_hypotheses}")
        sampled_greedy = self.beam_size == 1 and self.is_sampling and not self.is_biased
        if self.num_hypotheses > self.max_candidates and not (self.return_alternatives or sampled_greedy):
            raise ValueError(
                f"num_hypotheses={self.num_hypotheses} cannot exceed beam_size * patience "
                f"= {self.max_candidates} (unless sampling without prefix_bias_beta, or return_alternatives)"
            )
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"min_length={self.min_length} must lie in [0, max_length={self.max_length}]")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if any(len(s) == 0 for s in self.suppress_sequences):
            raise ValueError("suppress_sequences must not contain an empty sequence")
        if self.sampling_topk < 0:
            raise ValueError(f"sampling_topk must be >= 0, got {self.sampling_topk}")
        if not 0 < self.sampling_topp <= 1:
            raise ValueError(f"sampling_topp must lie in (0, 1], got {self.sampling_topp}")
        if self.sampling_temperature < 0:
            raise ValueError(f"sampling_temperature must be >= 0, got {self.sampling_temperature}")
        if not 0 <= self.prefix_bias_beta < 1:
            raise ValueError(f"prefix_bias_beta must lie in [0, 1), got {self.prefix_bias_beta}")
        if self.is_biased and self.return_alternatives:
            raise ValueError("prefix_bias_beta (biased decoding) does not combine with return_alternatives")
        if not 0 <= self.min_alternative_expansion_prob <= 1:
            raise ValueError("min_alternative_expansion_prob must lie in [0, 1]")
        if self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {self.n_threads}")


def truncate_input(ids: Sequence[int], max_input_length: int, end_ids: Collection[int] = ()) -> list[int]:
    """The first `max_input_length` ids (0 disables truncation): CTranslate2's `max_input_length`.
    A sequence that ends with one of `end_ids` keeps it last (the first max_input_length - 1 ids,
    then it), as CTranslate2 does with a source's </s> and transformers' tokenizers with their
    special tokens.

    Apply it to the ids the model will read (source ids with their special tokens, or a prompt),
    so that a request never exceeds the model's positions."""
    if max_input_length < 0:
        raise ValueError(f"max_input_length must be >= 0, got {max_input_length}")
    if not max_input_length or len(ids) <= max_input_length:
        return list(ids)
    if ids[-1] in end_ids:
        return [*ids[: max_input_length - 1], ids[-1]]
    return list(ids[:max_input_length])
