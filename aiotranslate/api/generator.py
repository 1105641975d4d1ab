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
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from .. import ops
from ..backends import host_float32
from ..decoding import score_sequences
from ..decoding.search import pad
from ..results import GenerationResult, ScoringResult
from ..runtime import Request
from . import files, inputs
from .batching import batch_key, complete, gather_in_order, run_decoding, step_hooks, token_names
from .bulk import BulkResults
from .files import ExecutionStats
from .model_engine import ModelEngine
from .static_prompts import StaticPromptCache
from .streaming import TokenStream, stream_options

# CTranslate2's Generator.generate_batch defaults, by their names.
GENERATE_DEFAULTS: dict[str, Any] = dict(
    beam_size=1, patience=1.0, num_hypotheses=1, length_penalty=1.0, repetition_penalty=1.0,
    no_repeat_ngram_size=0, disable_unk=False, suppress_sequences=None, end_token=None,
    return_end_token=False, max_length=512, min_length=0, static_prompt=None,
    cache_static_prompt=True, include_prompt_in_result=True, return_scores=False, return_logits_vocab=False,
    return_alternatives=False, min_alternative_expansion_prob=0.0, sampling_topk=1, sampling_topp=1.0,
    sampling_temperature=1.0, seed=None,
)


class Generator(ModelEngine):
    """Generate with a decoder-only model. See `Engine` for threads, queue and lifecycle."""

    _thread_name = "generator"

    def __init__(self, *args, **kwargs) -> None:
        self._static_prompts = StaticPromptCache()  # before the workers start
        super().__init__(*args, **kwargs)

    @property
    def num_generators(self) -> int:
        return self._pool.num_workers  # inter_threads per device: CTranslate2 counts them all

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
        max_input_length: int = 0, timeout: float | None = None, on_step=None, callback=None, **options,
    ) -> tuple[list[Request], list[list[int]]]:
        loaded = self._loaded
        inputs.refuse_asynchronous(options.pop("asynchronous", False))
        unknown = set(options) - set(GENERATE_DEFAULTS)
        if unknown:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
        o = {**GENERATE_DEFAULTS, **options}
        ids = self._prompt_ids(prompts, max_input_length)
        static = o.pop("static_prompt")
        # As CTranslate2: the prompt in the result, its first token too unless it is the BOS.
        prompted, bos = o.pop("include_prompt_in_result"), loaded.special.bos
        vocab = loaded.model.vocab_size
        decoding = inputs.decoding_options(
            loaded.special, loaded.tokenizer, vocab,
            end_token=o.pop("end_token"), disable_unk=o.pop("disable_unk"),
            suppress_sequences=o.pop("suppress_sequences"),
            static_prompt=() if not static else tuple(inputs.to_ids([static], loaded.tokenizer, vocab)[0]),
            return_prefix=prompted, start_returned_unless=(() if bos is None else (bos,)) if prompted else None, **o,
        )
        batches = inputs.split_batches([len(p) for p in ids], max_batch_size, batch_type)
        hooks = step_hooks(on_step, callback, loaded.tokenizer, batches)
        requests = [
            Request(batch_key(kind, decoding), [ids[i] for i in idx], decoding,
                    num_tokens=sum(len(ids[i]) for i in idx), on_step=hook, timeout=timeout)
            for idx, hook in zip(batches, hooks)
        ]
        return requests, batches

    def _score_requests(self, tokens, *, max_batch_size: int = 0, batch_type: str = "examples",
                        max_input_length: int = 0, timeout: float | None = None, kind: str = "score",
                        asynchronous: bool = False):
        inputs.refuse_asynchronous(asynchronous)
        ids = self._prompt_ids(tokens, max_input_length)
        batches = inputs.split_batches([len(p) for p in ids], max_batch_size, batch_type)
        return [
            Request((kind,), [ids[i] for i in idx], None, num_tokens=sum(len(ids[i]) for i in idx), timeout=timeout)
            for idx in batches
        ], batches

    # -- the public surface --------------------------------------------------------------------

    async def generate_batch(self, start_tokens, **options) -> list[GenerationResult]:
        """Continue each prompt (text, token strings or ids). With include_prompt_in_result (the
        default) the prompt opens each result, less its first token if that is the BOS, and counts
        in the score's length, as CTranslate2 returns it. Options are CTranslate2's: max_batch_size,
        batch_type, beam_size, patience,
        num_hypotheses, length_penalty, repetition_penalty, no_repeat_ngram_size, disable_unk,
        suppress_sequences, end_token, return_end_token, max_length, min_length, static_prompt,
        cache_static_prompt (api/static_prompts.py), include_prompt_in_result, return_scores,
        return_logits_vocab, return_alternatives, min_alternative_expansion_prob, sampling_topk,
        sampling_topp, sampling_temperature, callback; plus seed, max_input_length and timeout."""
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

    async def generate_chat(self, messages, **options) -> str | list[str]:
        """The assistant's reply to a conversation (a list of {"role": ..., "content": ...} messages)
        rendered with the model's chat template; a list of conversations gives a list of replies.
        Options are generate_batch's. To stream a reply, pass
        `generator.tokenizer.apply_chat_template(messages)` to `generate_tokens`."""
        single = bool(messages) and isinstance(messages[0], Mapping)
        conversations = [messages] if single else list(messages)
        tokenizer = self._loaded.tokenizer
        if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("generate_chat needs a model that ships a chat template (its tokenizer has none)")
        prompts = [tokenizer.apply_chat_template(c) for c in conversations]
        options = {"include_prompt_in_result": False, **options}
        requests, batches = self._generate_requests("text", prompts, **options)
        out = gather_in_order(await self._run_all(requests), batches)
        return out[0] if single else out

    def generate_tokens(self, prompt, **options) -> TokenStream:
        """Stream one prompt's continuation token by token:
        `async with generator.generate_tokens(p) as steps: async for step in steps`, or outside a
        coroutine `for step in generator.generate_tokens(p)` (CTranslate2's blocking iterator).
        As in CTranslate2, a list of prompts (each a list of tokens or ids) streams them together,
        each step naming its prompt by `batch_id`. Greedy or sampling by default; with beam_size > 1,
        the tokens that all live beams share as soon as they share them, then the rest of the best
        hypothesis at the end. Leaving the block stops decoding at the next step. The last step of a
        sequence that ended is its end token (one of `end_token_ids`, with empty text)."""
        return self._token_stream(prompt, options, nowait=False)

    def generate_tokens_nowait(self, prompt, **options) -> TokenStream:
        """`generate_tokens`, admitted at once or QueueFull (a web app's 429); call it from a
        coroutine and close the stream (`async with`) even if you never read it."""
        return self._token_stream(prompt, options, nowait=True)

    # CTranslate2's name for the stream of asynchronous steps.
    async_generate_tokens = generate_tokens

    def _token_stream(self, prompt, options: dict, nowait: bool) -> TokenStream:
        # CTranslate2's generate_tokens streams the continuation only: max_length counts new tokens.
        options = stream_options(options, include_prompt_in_result=False)
        # A stream is one request: its prompts decode as one batch (a split would change no result).
        for split_option in ("max_batch_size", "batch_type"):
            options.pop(split_option, None)
        batch = not isinstance(prompt, str) and len(prompt) > 0 and not isinstance(prompt[0], (str, int, np.integer))
        prompts = list(prompt) if batch else [prompt]
        return self._stream(self._loaded.tokenizer, lambda push: self._generate_requests(
            "tokens", prompts, on_step=push, **options
        )[0], nowait=nowait)

    async def score_batch(self, tokens, **options) -> list[ScoringResult]:
        """Log-probability of each token given the ones before it (the first is not scored).
        Options: max_batch_size, batch_type, max_input_length, timeout."""
        requests, batches = self._score_requests(tokens, **options)
        return gather_in_order(await self._run_all(requests), batches)

    def submit_score_batch(self, tokens, **options) -> concurrent.futures.Future:
        requests, batches = self._score_requests(tokens, **options)
        return self._submit_all(requests, batches)

    async def forward_batch(self, tokens, lengths=None, return_log_probs: bool = False, **options) -> list[np.ndarray]:
        """Logits of every position (with return_log_probs: their log-softmax over the vocabulary):
        one float32 (T, V) array per sequence. As in CTranslate2, `lengths` says how many tokens of
        each row of a padded batch (an integer array (B, S)) are the sequence's."""
        kind = "forward_log_probs" if return_log_probs else "forward"
        if lengths is not None:
            tokens = inputs.trimmed(tokens, lengths)
        requests, batches = self._score_requests(tokens, kind=kind, **options)
        return gather_in_order(await self._run_all(requests), batches)

    # -- bulk: iterables and files (bulk.py, files.py) -----------------------------------------

    def generate_iterable(self, start_tokens, max_batch_size: int = 32, batch_type: str = "examples",
                          **options) -> BulkResults:
        """generate_batch over a stream of prompts (a sync iterable, or an async one under
        `async for`): the results in input order while sub-batches run in parallel. Read with
        `async for` in a coroutine or `for` in a script; leaving early cancels the work in flight."""

        def build(prompts):
            return self._generate_requests("tokens", prompts, max_batch_size=max_batch_size, batch_type=batch_type,
                                           **options)  # fmt: skip

        return self._bulk(build, [start_tokens], max_batch_size, batch_type)

    def score_iterable(self, tokens, max_batch_size: int = 64, batch_type: str = "examples", **options) -> BulkResults:
        """`score_batch` over a stream of sequences; see generate_iterable."""

        def build(sequences):
            return self._score_requests(sequences, max_batch_size=max_batch_size, batch_type=batch_type, **options)

        return self._bulk(build, [tokens], max_batch_size, batch_type)

    async def score_file(self, input_path, output_path, **options) -> ExecutionStats:
        """Score each line of a text file: `mean log-prob ||| line` lines (the first token is not
        scored). Keywords: max_batch_size=32, read_batch_size, batch_type, with_tokens_score,
        tokenize_fn, detokenize_fn (default: the model's tokenizer, else whitespace), progress,
        max_input_length."""
        return await self._score_job(input_path, output_path, **options).run_async()

    def submit_score_file(self, input_path, output_path, **options) -> concurrent.futures.Future:
        return self._score_job(input_path, output_path, **options).start()

    def _score_job(self, input_path, output_path, *, tokenize_fn=None, detokenize_fn=None, max_input_length: int = 0,
                   timeout: float | None = None, **options):
        codec = files.TextCodec(self.tokenizer, tokenize_fn, None, detokenize_fn)
        max_batch_size, batch_type = options.get("max_batch_size", 32), options.get("batch_type", "examples")

        def build(sequences):
            return self._score_requests(sequences, max_batch_size=max_batch_size, batch_type=batch_type,
                                        max_input_length=max_input_length, timeout=timeout)  # fmt: skip

        return files.score_job(self, build, [input_path], codec, output_path, **options)

    # -- worker side ---------------------------------------------------------------------------

    def _run_batch(self, context, requests: list[Request]) -> None:
        model, tokenizer = self._model(context), self._loaded.tokenizer
        kind = requests[0].key[0]
        if kind not in ("score", "forward", "forward_log_probs"):
            options = replace(requests[0].options, n_threads=context.n_threads)
            start, outputs = partial(self._start_generation, model), partial(self._outputs, kind)
            run_decoding(requests, model, options, start, outputs, self._pool.take_joiners)
            return
        prompts = [p for r in requests for p in r.examples]
        state = model.new_state(len(prompts), context.n_threads)
        if kind == "score":
            log_probs = score_sequences(model, state, prompts, n_threads=context.n_threads)
            tokens = token_names(tokenizer, [p[1:] for p in prompts])
            outputs = [ScoringResult(t, lp.tolist()) for t, lp in zip(tokens, log_probs)]
        else:
            ids, lengths = pad(prompts)
            logits = host_float32(model.decode(state, ids, lengths, all_logits=True))
            if kind == "forward_log_probs":
                logits = ops.log_softmax(logits, n_threads=context.n_threads)
            outputs = [np.array(logits[b, : len(p)]) for b, p in enumerate(prompts)]
        complete(requests, outputs)

    def _start_generation(self, model, requests: list[Request], options):
        """A decoding start for these requests: a state sized for them (its rows holding the static
        prompt already when it is cached), their prompts, and the options."""
        prompts = [p for r in requests for p in r.examples]
        longest = max(len(p) for p in prompts) + len(options.static_prompt)
        capacity = longest + options.max_length
        if model.max_positions is not None:  # a row stops where the position table ends (decoding.Limits)
            capacity = min(capacity, model.max_positions)
        state = model.new_state(len(prompts), options.n_threads, capacity=capacity)
        if options.static_prompt and options.cache_static_prompt and hasattr(state, "start_from"):
            state.start_from(self._static_prompts.state(model, options.static_prompt, options.n_threads))
        return state, prompts, options

    def _outputs(self, kind: str, results) -> list:
        tokenizer = self._loaded.tokenizer
        if kind == "text":
            return tokenizer.decode([r.hypotheses[0] if r.hypotheses else [] for r in results])
        return [
            GenerationResult(token_names(tokenizer, r.hypotheses), r.hypotheses, r.scores, r.logits)
            for r in results
        ]

