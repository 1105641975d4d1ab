"""Decoding: the search algorithms and logits processors that turn a decoder into sequences.

    state = model.start(...)                                   # models/: encoder pass or empty state
    results = decode(model, state, start_tokens, options, on_step)   # -> DecodingResult per example
    log_probs = score_sequences(model, state, sequences)       # score_batch core

    decode ── begin: prefill (search), [expand_alternatives] ── greedy_search | beam_search ── collect
                                                                  │
                        LogitsProcessors (processors) ── sampler (sampling) ── model.decode / state.select

Everything works in token ids through the `DecoderModel` / `DecoderState` contract of
`models.base`; the heavy per-step work over (rows, vocabulary) goes through `ops` with the worker's
`n_threads`. A per-step hook (`on_step`) receives each decoded token as a `GenerationStepResult`
and may return True to stop that sequence: the runtime streams with it; `should_stop(batch_id)`,
asked every step, cancels. `GreedySearch` lets rows join a running greedy or sampling search between
steps (continuous batching). Decoding holds no threads, no asyncio, and no token strings.

Semantics follow CTranslate2's option names and transformers' `generate` results (greedy and beam
search are token-identical to it, see the tests); where the two differ the module docstrings say
which was chosen: `options` (lengths), `search` (scores), `beam` (finishing), `processors` (order).
"""

from .decode import begin, collect, decode
from .greedy import Finished, GreedySearch, shared_options
from .options import DecodingOptions, truncate_input
from .scoring import score_sequences
from .search import AttentionDecoderModel, DecodingResult, StepHook, StopCheck, wants_attention

__all__ = [
    "AttentionDecoderModel",
    "DecodingOptions",
    "DecodingResult",
    "Finished",
    "GreedySearch",
    "StepHook",
    "StopCheck",
    "begin",
    "collect",
    "decode",
    "score_sequences",
    "shared_options",
    "truncate_input",
    "wants_attention",
]
