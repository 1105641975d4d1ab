"""`Translator`: encoder-decoder models behind `await`, with CTranslate2's method and option names.

    async with Translator("en-pt") as translator:
        print(await translator.translate("How are you today?"))
        results = await translator.translate_batch([["▁Hello", "▁world", "</s>"]], beam_size=4)
        async with translator.generate_tokens(["▁Hello", "</s>"]) as steps:
            async for step in steps: ...

Each coroutine has a plain-thread twin, `submit_<name>`, returning a concurrent.futures.Future (it
blocks the calling thread while the queue is full), and `translate_batch_nowait` / `translate_nowait`
raise QueueFull instead of waiting. Calls are split into sub-batches (`max_batch_size`), which workers run in parallel
and merge with concurrent callers' compatible sub-batches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from ..decoding import score_sequences, truncate_input
from ..decoding.search import pad, supports_attention
from ..results import ScoringResult, TranslationResult
from ..runtime import Request
from . import files, inputs
from .batching import batch_key, complete, gather_in_order, run_decoding, step_hooks, token_names
from .bulk import BulkResults
from .files import ExecutionStats
from .model_engine import ModelEngine
from .streaming import TokenStream, stream_options

# CTranslate2's Translator.translate_batch defaults, by their names.
TRANSLATE_DEFAULTS: dict[str, Any] = dict(
    beam_size=2, patience=1.0, num_hypotheses=1, length_penalty=1.0, coverage_penalty=0.0,
    repetition_penalty=1.0, no_repeat_ngram_size=0, disable_unk=False, suppress_sequences=None,
    end_token=None, return_end_token=False, max_decoding_length=256, min_decoding_length=1,
    return_scores=False, return_logits_vocab=False, return_attention=False, return_alternatives=False,
    min_alternative_expansion_prob=0.0, sampling_topk=1, sampling_topp=1.0, sampling_temperature=1.0,
    prefix_bias_beta=0.0, seed=None,
)


class Translator(ModelEngine):
    """Translate with an encoder-decoder model: Marian/OPUS-MT, BART, mBART, M2M100/NLLB, or the
    bundled Bergamot models ("en-pt", "pt-en"). See `Engine` for threads, queue and lifecycle."""

    _thread_name = "translator"

    @property
    def num_translators(self) -> int:
        return self._pool.num_workers  # inter_threads per device: CTranslate2 counts them all

    # -- request building (caller side) --------------------------------------------------------

    def _translate_requests(
        self, kind: str, source, target_prefix=None, *, max_batch_size: int = 0, batch_type: str = "examples",
        max_input_length: int = 1024, timeout: float | None = None, on_step=None, callback=None, **options,
    ) -> tuple[list[Request], list[list[int]]]:
        loaded = self._loaded
        # CTranslate2's use_vmap does nothing without a vocabulary map, and no format we load ships
        # one (Bergamot's shortlist is always on).
        options.pop("use_vmap", None)
        replace_unknowns = bool(options.pop("replace_unknowns", False))
        inputs.refuse_asynchronous(options.pop("asynchronous", False))
        unknown = set(options) - set(TRANSLATE_DEFAULTS)
        if unknown:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
        o = {**TRANSLATE_DEFAULTS, **options}
        vocab = loaded.model.vocab_size
        sources = inputs.source_ids(source, loaded.tokenizer, loaded.model, max_input_length, loaded.special.end)
        prefixes = [[] for _ in sources]
        if target_prefix is not None:
            if len(target_prefix) != len(sources):
                raise ValueError(f"target_prefix has {len(target_prefix)} entries for {len(sources)} sources")
            given = [i for i, p in enumerate(target_prefix) if p]
            ids = inputs.to_ids([target_prefix[i] for i in given], loaded.tokenizer, vocab, target=True,
                                name="target_prefix")
            for i, p in zip(given, ids):
                prefixes[i] = p
        special = loaded.special
        # With prefix_bias_beta the prefix is favoured, not forced; so is a forced first token then. A
        # call without prefixes is not biased (CTranslate2's rule): its forced token stays forced.
        if not any(prefixes):
            o["prefix_bias_beta"] = 0.0
        forced = [] if special.forced_first is None else [special.forced_first]
        starts = [[special.start] + (p or forced) for p in prefixes]
        # Per example: (its source's token strings, whether the caller asked for attention) when
        # unknown targets are replaced, which reads the attention (api._outputs), else None.
        replacing: list[tuple[list[str], bool] | None] = [None] * len(sources)
        if replace_unknowns:
            if kind != "tokens" or loaded.tokenizer is None or special.unk is None:
                raise ValueError("replace_unknowns needs token outputs and a vocabulary with an unknown token")
            if not supports_attention(loaded.model):
                raise ValueError("replace_unknowns reads the attention, which this model does not return")
            names = inputs.source_names(source, sources, loaded.tokenizer)
            replacing = [(row, o["return_attention"]) for row in names]
            o["return_attention"] = True
        decoding = inputs.decoding_options(
            special, loaded.tokenizer, vocab,
            end_token=o.pop("end_token"), disable_unk=o.pop("disable_unk"),
            suppress_sequences=o.pop("suppress_sequences"),
            max_length=o.pop("max_decoding_length"), min_length=o.pop("min_decoding_length"), **o,
        )
        batches, empty = _split(sources, max_batch_size, batch_type)
        hooks = step_hooks(on_step, callback, loaded.tokenizer, batches)
        requests = [
            Request(batch_key(kind, decoding), [(sources[i], starts[i], replacing[i]) for i in idx], decoding,
                    num_tokens=sum(len(sources[i]) for i in idx), on_step=hook, timeout=timeout)
            for idx, hook in zip(batches, hooks)
        ]
        _add_empty(requests, batches, empty, kind, [prefixes[i] for i in empty], decoding, timeout)
        return requests, batches

    # -- the public surface --------------------------------------------------------------------

    async def translate_batch(self, source, target_prefix=None, **options) -> list[TranslationResult]:
        """Translate a batch: texts, token strings (CTranslate2's form) or ids per example.

        Options are CTranslate2's: max_batch_size, batch_type, max_input_length, beam_size, patience,
        num_hypotheses, length_penalty, coverage_penalty, repetition_penalty, no_repeat_ngram_size,
        disable_unk, suppress_sequences, end_token, return_end_token, max_decoding_length,
        min_decoding_length, return_scores, return_logits_vocab, return_attention,
        return_alternatives, min_alternative_expansion_prob, sampling_topk, sampling_topp,
        sampling_temperature, replace_unknowns, callback, use_vmap (no effect: no vocabulary map),
        prefix_bias_beta (target_prefix favoured, not forced: a beam search), asynchronous (False
        only: `submit_translate_batch` is the thread form); plus seed (sampling) and timeout
        (seconds, TimeoutError past it).
        """
        requests, batches = self._translate_requests("tokens", source, target_prefix, **options)
        return gather_in_order(await self._run_all(requests), batches)

    def submit_translate_batch(self, source, target_prefix=None, **options) -> concurrent.futures.Future:
        """`translate_batch` from a plain thread: a Future of the list of results."""
        requests, batches = self._translate_requests("tokens", source, target_prefix, **options)
        return self._submit_all(requests, batches)

    def translate_batch_nowait(self, source, target_prefix=None, **options) -> asyncio.Future:
        """Admit at once or raise QueueFull (for a web app's 429); await the returned future."""
        requests, batches = self._translate_requests("tokens", source, target_prefix, **options)
        return self._nowait_all(requests, batches)

    async def translate(self, text: str | Sequence[str], **options) -> str | list[str]:
        """Text in, text out (the model's tokenizer); a list gives a list."""
        single = isinstance(text, str)
        requests, batches = self._translate_requests("text", [text] if single else list(text), **options)
        out = gather_in_order(await self._run_all(requests), batches)
        return out[0] if single else out

    def translate_nowait(self, texts: Sequence[str], **options) -> asyncio.Future:
        """`translate` of a list, admitted at once or QueueFull; await the returned future."""
        return self._nowait_all(*self._text_requests(texts, "translate_nowait", options))

    def submit_translate(self, texts: Sequence[str], **options) -> concurrent.futures.Future:
        """`translate` of a list from a plain thread: a Future of the translations."""
        return self._submit_all(*self._text_requests(texts, "submit_translate", options))

    def _text_requests(self, texts: Sequence[str], method: str, options: dict):
        if isinstance(texts, str):
            raise TypeError(f"{method} takes a list of texts")
        return self._translate_requests("text", list(texts), **options)

    async def score_batch(self, source, target, **options) -> list[ScoringResult]:
        """Log-probability of each target token (and of the end token) given its source.
        Options: max_batch_size, batch_type, max_input_length, offset (leave out the first `offset`
        target tokens: their scores and names, as CTranslate2), timeout."""
        requests, batches = self._score_requests(source, target, **options)
        return gather_in_order(await self._run_all(requests), batches)

    def submit_score_batch(self, source, target, **options) -> concurrent.futures.Future:
        requests, batches = self._score_requests(source, target, **options)
        return self._submit_all(requests, batches)

    def generate_tokens(self, source, target_prefix=None, **options) -> TokenStream:
        """Stream the translation of one source step by step:
        `async with translator.generate_tokens(src) as steps: async for step in steps`, or outside
        a coroutine `for step in translator.generate_tokens(src)` (CTranslate2's blocking iterator).
        Greedy or sampling by default; with beam_size > 1, the tokens that all live beams share as
        soon as they share them, then the rest of the best hypothesis at the end. Leaving the block
        stops decoding at the next step."""
        options = stream_options(options, beam_size=1)
        return self._stream(self._loaded.tokenizer, lambda push: self._translate_requests(
            "tokens", [source], None if target_prefix is None else [target_prefix], on_step=push, **options
        )[0])

    def _score_requests(self, source, target, *, max_batch_size: int = 0, batch_type: str = "examples",
                        max_input_length: int = 1024, offset: int = 0, timeout: float | None = None,
                        asynchronous: bool = False):
        inputs.refuse_asynchronous(asynchronous)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        loaded = self._loaded
        vocab = loaded.model.vocab_size
        sources = inputs.source_ids(source, loaded.tokenizer, loaded.model, max_input_length, loaded.special.end)
        targets = inputs.to_ids(target, loaded.tokenizer, vocab, target=True, name="target")
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        special = loaded.special
        end = list(special.end[:1])
        # As in CTranslate2, the scored tokens (the target and its end token) are truncated too.
        sequences = [[special.start] + truncate_input(t + end, max_input_length, end) for t in targets]
        batches, empty = _split(sources, max_batch_size, batch_type)
        requests = [
            Request(("score",), [(sources[i], sequences[i]) for i in idx], int(offset),  # options: the offset
                    num_tokens=sum(len(sources[i]) for i in idx), timeout=timeout)
            for idx in batches
        ]
        _add_empty(requests, batches, empty, "score", [sequences[i] for i in empty], int(offset), timeout)
        return requests, batches

    # -- bulk: iterables and files (bulk.py, files.py) -----------------------------------------

    def translate_iterable(self, source, target_prefix=None, max_batch_size: int = 32, batch_type: str = "examples",
                           **options) -> BulkResults:
        """Translate a stream of examples (a sync iterable, or an async one under `async for`), in
        any form translate_batch takes, with translate_batch's options: the results, in input
        order, while sub-batches run in parallel. Read with `async for` in a coroutine or `for`
        in a script; leaving early cancels the work in flight."""

        def build(src, prefix=None):
            return self._translate_requests("tokens", src, prefix, max_batch_size=max_batch_size,
                                            batch_type=batch_type, **options)  # fmt: skip

        sources = [source] if target_prefix is None else [source, target_prefix]
        return self._bulk(build, sources, max_batch_size, batch_type)

    def score_iterable(self, source, target, max_batch_size: int = 64, batch_type: str = "examples",
                       **options) -> BulkResults:
        """`score_batch` over two streams of examples; see translate_iterable."""

        def build(src, tgt):
            return self._score_requests(src, tgt, max_batch_size=max_batch_size, batch_type=batch_type, **options)

        return self._bulk(build, [source, target], max_batch_size, batch_type)

    async def translate_file(self, source_path, output_path, target_path=None, **options) -> ExecutionStats:
        """Translate a text file line by line into output_path (constant memory, lines in order,
        an empty line gives an empty line); target_path: a file of target prefixes, line by line
        (CTranslate2's signature). Keywords: max_batch_size=32, read_batch_size=0
        (max_batch_size x 16), batch_type, with_scores (`score ||| text` lines),
        source_tokenize_fn, target_tokenize_fn, target_detokenize_fn (default: the model's
        tokenizer, else whitespace), progress (a tqdm bar on stderr; None: when it is a terminal),
        and translate_batch's options."""
        return await files.translate_job(self, source_path, output_path, target_path, **options).run_async()

    def submit_translate_file(self, source_path, output_path, target_path=None, **options) -> concurrent.futures.Future:
        """`translate_file` on a thread of its own: a Future of its ExecutionStats."""
        return files.translate_job(self, source_path, output_path, target_path, **options).start()

    async def score_file(self, source_path, target_path, output_path, **options) -> ExecutionStats:
        """Score each target line given its source line: `mean log-prob ||| target` lines.
        Keywords: max_batch_size, read_batch_size, batch_type, with_tokens_score,
        source_tokenize_fn, target_tokenize_fn, target_detokenize_fn, progress, max_input_length."""
        return await self._score_job(source_path, target_path, output_path, **options).run_async()

    def submit_score_file(self, source_path, target_path, output_path, **options) -> concurrent.futures.Future:
        return self._score_job(source_path, target_path, output_path, **options).start()

    def _score_job(self, source_path, target_path, output_path, *, source_tokenize_fn=None, target_tokenize_fn=None,
                   target_detokenize_fn=None, max_input_length: int = 1024, timeout: float | None = None, **options):
        codec = files.TextCodec(self.tokenizer, source_tokenize_fn, target_tokenize_fn, target_detokenize_fn)
        max_batch_size, batch_type = options.get("max_batch_size", 32), options.get("batch_type", "examples")

        def build(source, target):
            return self._score_requests(source, target, max_batch_size=max_batch_size, batch_type=batch_type,
                                        max_input_length=max_input_length, timeout=timeout)  # fmt: skip

        return files.score_job(self, build, [source_path, target_path], codec, output_path, **options)

    # -- worker side ---------------------------------------------------------------------------

    def _run_batch(self, context, requests: list[Request]) -> None:
        model, kind = self._model(context), requests[0].key[0]
        if kind == "empty":
            complete(requests, [self._empty_result(r.key[1], r.options, e) for r in requests for e in r.examples])
            return
        if kind == "score":
            state, sequences = self._encode(model, requests, context.n_threads)
            log_probs = score_sequences(model, state, sequences, n_threads=context.n_threads)
            tokens = token_names(self._loaded.tokenizer, [s[1:] for s in sequences])
            offsets = [r.options for r in requests for _ in r.examples]  # merged requests keep their own
            complete(requests, [ScoringResult(t[o:], lp.tolist()[o:]) for t, lp, o in zip(tokens, log_probs, offsets)])
            return
        options = replace(requests[0].options, n_threads=context.n_threads)
        # Replacing examples ask for attention, so their batch decodes as formed (batching.continuous):
        # the results come in the order of these examples.
        examples = [ex for r in requests for ex in r.examples]
        replacing = [ex[2] for ex in examples]
        start = partial(self._start_translation, model)
        outputs = partial(self._outputs, kind, [len(ex[0]) for ex in examples], replacing if any(replacing) else None)
        run_decoding(requests, model, options, start, outputs, self._pool.take_joiners)

    def _encode(self, model, requests: list[Request], n_threads: int):
        """The encoder state of these requests' sources, and their target sides."""
        examples = [ex for r in requests for ex in r.examples]
        src, lengths = pad([ex[0] for ex in examples])
        return model.encode(src, lengths, n_threads=n_threads), [ex[1] for ex in examples]

    def _start_translation(self, model, requests: list[Request], options):
        """A decoding start for these requests: their encoder state and decoder start tokens."""
        state, start_tokens = self._encode(model, requests, options.n_threads)
        return state, start_tokens, options

    def _empty_result(self, kind: str, options, example: list[int]):
        """What CTranslate2 returns for an empty source: num_hypotheses copies of the target prefix
        (`example`), scored 0, attending to nothing (text: the prefix's); for a score request (example:
        the target sequence, options: the offset), every token scored 0."""
        tokenizer = self._loaded.tokenizer
        if kind == "score":
            tokens = token_names(tokenizer, [example[1:]])[0][options:]
            return ScoringResult(tokens, [0.0] * len(tokens))
        if kind == "text":
            return tokenizer.decode([example], target=True)[0]
        n = options.num_hypotheses
        return TranslationResult(token_names(tokenizer, [example] * n), [0.0] * n if options.return_scores else [],
                                 [np.zeros((len(example), 0), np.float32)] * n if options.return_attention else [])

    def _outputs(self, kind: str, source_lengths: list[int], replacing, results) -> list:
        """The public results of a batch's decoding results. With attention (which only a batch
        decoded as formed returns: batching.continuous), results[i] is example i's, and its
        attention rows are cut from the batch's padded source width to that example's source."""
        tokenizer = self._loaded.tokenizer
        if kind == "text":
            return tokenizer.decode([r.hypotheses[0] if r.hypotheses else [] for r in results], target=True)
        widths = source_lengths if any(r.attention for r in results) else [None] * len(results)
        outputs = [
            TranslationResult(token_names(tokenizer, r.hypotheses), r.scores, [a[:, :n] for a in r.attention], r.logits)
            for r, n in zip(results, widths)
        ]
        for out, r, replaced in zip(outputs, results, replacing or ()):
            if replaced is not None:
                _replace_unknowns(out, r.hypotheses, self._loaded.special.unk, *replaced)
        return outputs


def _split(sources: list[list[int]], max_batch_size: int, batch_type: str) -> tuple[list[list[int]], list[int]]:
    """The sub-batches of the non-empty sources (`inputs.split_batches`), and the indices of the empty
    ones. Those are not encoded: as in CTranslate2 they give their target prefix (scores: 0), from a
    request of their own that the worker completes at once (`Translator._empty_result`)."""
    empty = [i for i, s in enumerate(sources) if not s]
    return inputs.split_batches([len(s) for s in sources], max_batch_size, batch_type, skip=set(empty)), empty


def _add_empty(requests: list[Request], batches: list[list[int]], empty: list[int], kind: str, examples: list,
               options, timeout) -> None:
    """Append the request of the empty sources `empty` (see `_split`), if any, and their batch."""
    if empty:
        requests.append(Request(("empty", kind), examples, options, timeout=timeout))
        batches.append(empty)


def _replace_unknowns(result: TranslationResult, ids, unk: int, source: list[str], keep_attention: bool) -> None:
    """CTranslate2's replace_unknowns: each unknown target token becomes the source token its step
    attended to most (the source's token strings, as the caller gave them); the attention stays in
    the result only when the caller asked for it."""
    for tokens, hypothesis, attention in zip(result.hypotheses, ids, result.attention):
        for t, token_id in enumerate(hypothesis):
            if token_id == unk:
                tokens[t] = source[int(np.argmax(attention[t]))]  # a column per source token
    if not keep_attention:
        result.attention = []
