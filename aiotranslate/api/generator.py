"""`Generator`: decoder-only language models (GPT-2, Llama, Mistral, Qwen2/3, GGUF) behind `await`,
with CTranslate2's method and option names.

    async with Generator(model_dir) as generator:
        results = await generator.generate_batch([["<|endoftext|>", "ĠHello"]], max_length=32)
        async with generator.generate_tokens("Once upon a time", max_length=64) as steps:
            async for step in steps: print(step.text, end="")

As for `Translator`: `submit_*` twins for plain threads, `generate_batch_nowait` for QueueFull,
sub-batches (`max_batch_size`) run in parallel and merge with concurrent callers' requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..decoding import decode, score_sequences
from ..decoding.search import pad
from ..results import GenerationResult, ScoringResult
from ..runtime import BatchLimits, Request
from . import inputs
from .batching import StepRouter, batch_key, complete, continuous, gather_in_order, run_continuous, token_names
from .engine import Engine
from .loading import open_model
from .streaming import TokenStream

# CTranslate2's Generator.generate_batch defaults, by their names.
GENERATE_DEFAULTS: dict[str, Any] = dict(
    beam_size=1, patience=1.0, num_hypotheses=1, length_penalty=1.0, repetition_penalty=1.0,
    no_repeat_ngram_size=0, disable_unk=False, suppress_sequences=None, end_token=None,
    return_end_token=False, max_length=512, min_length=0, static_prompt=None,
    include_prompt_in_result=True, return_scores=False, return_logits_vocab=False,
    return_alternatives=False, min_alternative_expansion_prob=0.0, sampling_topk=1, sampling_topp=1.0,
    sampling_temperature=1.0, seed=None,
)


class Generator(Engine):
    """Generate with a decoder-only model. See `Engine` for threads, queue and lifecycle."""

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cpu",
        *,
        device_index: int | Sequence[int] = 0,
        compute_type: str = "default",
        inter_threads: int = 1,
        intra_threads: int = 0,
        max_queued_batches: int = 0,
        tensor_parallel: bool = False,
        batch_window: float = 0.001,
    ) -> None:
        self._loaded = open_model(model_path, device, compute_type, tensor_parallel, inter_threads)
        self.device, self.device_index, self.compute_type = "cpu", device_index, self._loaded.compute_type
        self.model_path = str(model_path)
        super().__init__(
            inter_threads=inter_threads,
            intra_threads=intra_threads,
            max_queued_batches=max_queued_batches,
            limits=BatchLimits(max_examples=64, batch_window=batch_window),
            parallel=self._loaded.parallel,
            name="aiotranslate-generator",
        )

    @property
    def num_generators(self) -> int:
        return self.inter_threads

    @property
    def tokenizer(self):
        return self._loaded.tokenizer

    @property
    def end_token_ids(self) -> tuple[int, ...]:
        """The ids that end a sequence unless `end_token` says otherwise (the generation config's)."""
        return self._loaded.special.end

    # -- request building (caller side) --------------------------------------------------------

    def _prompt_ids(self, prompts, max_input_length: int = 0) -> list[list[int]]:
        loaded = self._loaded
        ids = inputs.truncate_all(inputs.to_ids(prompts, loaded.tokenizer, loaded.model.vocab_size, name="prompt"),
                                  max_input_length)
        if any(len(p) == 0 for p in ids):
            raise ValueError("a prompt is empty: it needs at least one token (e.g. the BOS token)")
        return ids

    def _generate_requests(
        self, kind: str, prompts, *, max_batch_size: int = 0, batch_type: str = "examples",
        max_input_length: int = 0, timeout: float | None = None, on_step=None, **options,
    ) -> tuple[list[Request], list[list[int]]]:
        loaded = self._loaded
        unknown = set(options) - set(GENERATE_DEFAULTS)
        if unknown:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
        o = {**GENERATE_DEFAULTS, **options}
        ids = self._prompt_ids(prompts, max_input_length)
        static = o.pop("static_prompt")
        vocab = loaded.model.vocab_size
        decoding = inputs.decoding_options(
            loaded.special, loaded.tokenizer, vocab,
            end_token=o.pop("end_token"), disable_unk=o.pop("disable_unk"),
            suppress_sequences=o.pop("suppress_sequences"),
            static_prompt=() if not static else tuple(inputs.to_ids([static], loaded.tokenizer, vocab)[0]),
            return_prefix=o.pop("include_prompt_in_result"), **o,
        )
        batches = inputs.split_batches([len(p) for p in ids], max_batch_size, batch_type)
        requests = [
            Request(batch_key(kind, decoding), [ids[i] for i in idx], decoding,
                    num_tokens=sum(len(ids[i]) for i in idx), on_step=on_step, timeout=timeout)
            for idx in batches
        ]
        return requests, batches

    def _score_requests(self, tokens, *, max_batch_size: int = 0, batch_type: str = "examples",
                        max_input_length: int = 0, timeout: float | None = None, kind: str = "score"):
        ids = self._prompt_ids(tokens, max_input_length)
        batches = inputs.split_batches([len(p) for p in ids], max_batch_size, batch_type)
        return [
            Request((kind,), [ids[i] for i in idx], None, num_tokens=sum(len(ids[i]) for i in idx), timeout=timeout)
            for idx in batches
        ], batches

    # -- the public surface --------------------------------------------------------------------

    async def generate_batch(self, start_tokens, **options) -> list[GenerationResult]:
        """Continue each prompt (text, token strings or ids; the first token is the start token and
        is not returned). Options are CTranslate2's: max_batch_size, batch_type, beam_size, patience,
        num_hypotheses, length_penalty, repetition_penalty, no_repeat_ngram_size, disable_unk,
        suppress_sequences, end_token, return_end_token, max_length, min_length, static_prompt,
        include_prompt_in_result, return_scores, return_logits_vocab, return_alternatives,
        min_alternative_expansion_prob, sampling_topk, sampling_topp, sampling_temperature; plus
        seed, max_input_length and timeout."""
        requests, batches = self._generate_requests("tokens", start_tokens, **options)
        return gather_in_order(await self._run_all(requests), batches)

    def submit_generate_batch(self, start_tokens, **options) -> concurrent.futures.Future:
        requests, batches = self._generate_requests("tokens", start_tokens, **options)
        return self._submit_all(requests, batches)

    def generate_batch_nowait(self, start_tokens, **options) -> asyncio.Future:
        """Admit at once or raise QueueFull; await the returned future."""
        requests, batches = self._generate_requests("tokens", start_tokens, **options)
        return self._nowait_all(requests, batches)

    async def generate(self, prompt: str | Sequence[str], **options) -> str | list[str]:
        """Text in, generated text out (without the prompt); a list gives a list."""
        single = isinstance(prompt, str)
        options = {"include_prompt_in_result": False, **options}
        requests, batches = self._generate_requests("text", [prompt] if single else list(prompt), **options)
        out = gather_in_order(await self._run_all(requests), batches)
        return out[0] if single else out

    def generate_tokens(self, prompt, **options) -> TokenStream:
        """Stream one prompt's continuation token by token:
        `async with generator.generate_tokens(p) as steps: async for step in steps`.
        Greedy or sampling by default; with beam_size > 1, the tokens that all live beams share as
        soon as they share them, then the rest of the best hypothesis at the end. Leaving the block
        stops decoding at the next step. The last step of a sequence that ended is its end token
        (one of `end_token_ids`, with empty text)."""
        return self._token_stream(prompt, options, nowait=False)

    def generate_tokens_nowait(self, prompt, **options) -> TokenStream:
        """`generate_tokens`, admitted at once or QueueFull (a web app's 429); call it from a
        coroutine and close the stream (`async with`) even if you never read it."""
        return self._token_stream(prompt, options, nowait=True)

    def _token_stream(self, prompt, options: dict, nowait: bool) -> TokenStream:
        if "num_hypotheses" in options or "return_alternatives" in options:
            raise TypeError("generate_tokens streams one sequence: no num_hypotheses or return_alternatives")
        options = {"return_scores": True, **options}
        return self._stream(self._loaded.tokenizer, lambda push: self._generate_requests(
            "tokens", [prompt], on_step=push, **options
        )[0], nowait=nowait)

    async def score_batch(self, tokens, **options) -> list[ScoringResult]:
        """Log-probability of each token given the ones before it (the first is not scored).
        Options: max_batch_size, batch_type, max_input_length, timeout."""
        requests, batches = self._score_requests(tokens, **options)
        return gather_in_order(await self._run_all(requests), batches)

    def submit_score_batch(self, tokens, **options) -> concurrent.futures.Future:
        requests, batches = self._score_requests(tokens, **options)
        return self._submit_all(requests, batches)

    async def forward_batch(self, tokens, **options) -> list[np.ndarray]:
        """Logits of every position: one float32 (T, V) array per sequence."""
        requests, batches = self._score_requests(tokens, kind="forward", **options)
        return gather_in_order(await self._run_all(requests), batches)

    # -- worker side ---------------------------------------------------------------------------

    def _run_batch(self, context, requests: list[Request]) -> None:
        model, tokenizer = self._loaded.model, self._loaded.tokenizer
        kind = requests[0].key[0]
        if kind not in ("score", "forward"):
            options = replace(requests[0].options, n_threads=context.n_threads)
            outputs = partial(self._outputs, kind)
            if continuous(options):
                run_continuous(requests, model, options, self._start_generation, outputs, self._pool.take_joiners)
                return
            state, prompts, options = self._start_generation(requests, options)
            router = StepRouter(requests)
            results = decode(model, state, prompts, options, router.on_step, router.should_stop)
            complete(requests, outputs(results), router)
            return
        prompts = [p for r in requests for p in r.examples]
        state = model.new_state(len(prompts), context.n_threads)
        if kind == "score":
            log_probs = score_sequences(model, state, prompts, n_threads=context.n_threads)
            tokens = token_names(tokenizer, [p[1:] for p in prompts])
            outputs = [ScoringResult(t, lp.tolist()) for t, lp in zip(tokens, log_probs)]
        else:
            ids, lengths = pad(prompts)
            logits = model.decode(state, ids, lengths, all_logits=True)
            outputs = [np.array(logits[b, : len(p)]) for b, p in enumerate(prompts)]
        complete(requests, outputs)

    def _start_generation(self, requests: list[Request], options):
        """A decoding start for these requests: an empty state sized for them, their prompts, and
        the options with max_length held within a learned position table."""
        model = self._loaded.model
        prompts = [p for r in requests for p in r.examples]
        longest = max(len(p) for p in prompts) + len(options.static_prompt)
        if model.max_positions is not None:  # learned positions: stop at the table's end
            # max_length counts the returned tokens, the prompt among them when it is returned.
            used = len(options.static_prompt) if options.return_prefix else longest
            options = replace(options, max_length=max(1, min(options.max_length, model.max_positions - used)))
        state = model.new_state(len(prompts), options.n_threads, capacity=longest + options.max_length)
        return state, prompts, options

    def _outputs(self, kind: str, results) -> list:
        tokenizer = self._loaded.tokenizer
        if kind == "text":
            return tokenizer.decode([r.hypotheses[0] if r.hypotheses else [] for r in results])
        return [
            GenerationResult(token_names(tokenizer, r.hypotheses), r.hypotheses, r.scores, r.logits)
            for r in results
        ]
