"""Glue between one worker batch and the requests it serves, and the continuous-batching scheduler.

A worker runs the examples of several requests as one batch. `StepRouter` routes each decoded token
back to its request (its stream, or its caller's `callback`: `StepCallback`) and answers the
per-step stop question (cancelled, past its deadline); `complete` hands each request its slice of
the outputs; `gather_in_order` puts the sub-batches of one call back in input order.

Scheduler. The pool forms a first batch from the queue: the oldest request and every queued one
with the same key, within `max_examples`. The key is the operation and the decoding options; for
continuous decoding only the options that choose tokens (`batch_key`), so that requests differing
in lengths, seed or what they return share a batch. Beam search, scoring, attention and
alternatives run the batch as it is (static). Greedy and sampling decoding run it continuously
(`run_continuous`), one loop per worker:

    cohort = first batch
    loop:  start(cohort): encode sources / new state, prefill   -> its rows join the GreedySearch
           search.step(): one token for every row               -> a request whose rows all ended
                                                                    is completed at once
           cohort = pool.take_joiners(...)                       -> compatible requests queued
                                                                    meanwhile (or none)
    until no row is left

so a short request queued while a long one decodes starts at the next step and leaves when it is
done. A cohort's rows are appended to the running state (`state.extend`: KV caches, encoder
memory) and rows that end are dropped from it: the batch is always the live sequences, at most
`max_examples` examples. Joining takes only the requests ahead of the first incompatible one in the
queue, so that one is served next (the batch stops growing, drains, and the worker takes it). A
request's tokens do not depend on its batch mates (up to float rounding of a differently shaped
matrix product): rows keep their own limits (learned positions cap max_length per request) and
sampling generators keyed by their index in their own request. A state that cannot take rows (no
`extend`: tensor-parallel and Bergamot models) decodes its first batch alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..decoding import (
    DecodingOptions,
    DecodingResult,
    Finished,
    GreedySearch,
    begin,
    collect,
    decode,
    shared_options,
    wants_attention,
)
from ..results import GenerationStepResult
from ..runtime import Request


class StepRouter:
    """The step hooks of a merged batch: batch row -> (request, index in it)."""

    def __init__(self, requests: list[Request]) -> None:
        self.owners = [(r, i) for r in requests for i in range(len(r))]
        self.stopped: set[int] = set()  # ids of requests stopped before their end
        self.streams = any(r.on_step is not None for r in requests)

    @property
    def on_step(self) -> Callable[[GenerationStepResult], bool] | None:
        """The decoding step hook, or None when no request has one (decoding then reports nothing)."""
        return self._route if self.streams else None

    def _route(self, step: GenerationStepResult) -> bool:
        """Hand the step to its request's hook; True when that hook asks to stop the example."""
        request, index = self.owners[step.batch_id]
        return request.on_step is not None and bool(request.on_step(replace(step, batch_id=index)))

    def should_stop(self, batch_id: int) -> bool:
        request = self.owners[batch_id][0]
        if request.should_stop():
            self.stopped.add(request.id)
            return True
        return False


class StepCallback:
    """CTranslate2's `callback` option as one request's step hook: called on the worker thread with
    each token of the request's examples (`batch_id` numbered in the caller's batch, `token` named);
    True stops that example there. An exception it raises stops the example and fails this request
    alone, with that exception, when the batch completes it: the worker and the other requests
    carry on. `forward` (a token stream's hook) then gets the step too, as CTranslate2's
    generate_tokens calls the callback of each step it yields."""

    def __init__(self, callback: Callable[[GenerationStepResult], Any], tokenizer, indices: list[int],
                 forward: Callable[[GenerationStepResult], Any] | None = None) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        self.callback, self.tokenizer, self.indices, self.forward = callback, tokenizer, indices, forward
        self.error: BaseException | None = None

    def __call__(self, step: GenerationStepResult) -> bool:
        if self.error is not None:
            return True
        token = None if self.tokenizer is None else self.tokenizer.ids_to_tokens([[step.token_id]], target=True)[0][0]
        try:
            stop = bool(self.callback(replace(step, batch_id=self.indices[step.batch_id], token=token)))
        except Exception as exc:  # noqa: BLE001 - the caller's code: its request fails, not the batch
            self.error = exc
            return True
        if self.forward is not None:
            stop = bool(self.forward(step)) or stop
        return stop


def step_hooks(on_step, callback, tokenizer, batches: list[list[int]]) -> list:
    """The step hook of each sub-batch of a call (`batches`: their indices in the call): a stream's
    `on_step`, or for the call's `callback` option a `StepCallback` each (which hands each step on
    to the stream's `on_step` if there is one), or None."""
    if callback is None:
        return [on_step] * len(batches)
    return [StepCallback(callback, tokenizer, idx, on_step) for idx in batches]


def settle(request: Request, stopped: bool, result: Callable[[], Any]) -> None:
    """Complete a request whose rows have all ended: as stopped early (cancelled, past its
    deadline), with its callback's error, or with `result()` (whose own error fails it alone)."""
    error = request.on_step.error if isinstance(request.on_step, StepCallback) else None
    if stopped or request.should_stop():
        request.finish_stopped()
    elif error is not None:
        request.set_exception(error)
    else:
        try:
            request.set_result(result())
        except Exception as exc:  # noqa: BLE001 - e.g. detokenizing: this request's failure alone
            request.set_exception(exc)


def complete(requests: list[Request], outputs: list, router: StepRouter | None = None) -> None:
    """Give each request its slice of outputs (in batch order), or complete it as `settle` says."""
    start = 0
    for r in requests:
        part = outputs[start : start + len(r)]
        start += len(r)
        settle(r, router is not None and r.id in router.stopped, lambda: part)


# A cohort's model start: (its requests, their options) -> (state holding one row per example, start
# tokens, the options to decode them with).
Start = Callable[[list[Request], DecodingOptions], tuple[Any, list[list[int]], DecodingOptions]]
# The outputs of examples from their decoding results.
Outputs = Callable[[list[DecodingResult]], list]


def continuous(options: DecodingOptions) -> bool:
    """Whether decoding with these options runs continuously (else as a static batch)."""
    return (options.beam_size == 1 and not options.is_biased and not options.return_alternatives
            and not wants_attention(options))


def keep_apart(requests: list[Request], always: bool = False) -> list[Request]:
    """The sub-batches of one call (split by max_batch_size), each under a key of its own so that the
    scheduler does not merge them back into one batch: they run on several workers at once. A call
    that is one batch keeps its key and may share a batch with other callers' requests, unless
    `always` (the chunks of a bulk call, each already a batch of max_batch_size)."""
    if always or len(requests) > 1:
        for r in requests:
            own = ("sub-batch", r.id)  # the worker reads key[0]: the id goes last
            if r.key[-1] != own:
                r.key = (*r.key, own)
    return requests


def batch_key(kind: str, options: DecodingOptions) -> tuple:
    """The key of a decoding request: requests with equal keys may share a batch. Continuous
    decoding lets requests that differ in per-row options only (max_length, seed, ...) share one."""
    return (kind, shared_options(options) if continuous(options) else options)


def run_decoding(
    requests: list[Request],
    model,
    options: DecodingOptions,
    start: Start,
    outputs: Outputs,
    take_joiners: Callable[[list[Request]], list[Request]],
) -> None:
    """Decode a batch of requests (same key) on a worker, completing each: continuously (greedy and
    sampling: others may join) or as formed (beam search)."""
    if continuous(options):
        run_continuous(requests, model, options, start, outputs, take_joiners)
        return
    state, start_tokens, options = start(requests, options)
    router = StepRouter(requests)
    results = decode(model, state, start_tokens, options, router.on_step, router.should_stop)
    complete(requests, outputs(results), router)


def run_continuous(
    requests: list[Request],
    model,
    options: DecodingOptions,
    start: Start,
    outputs: Outputs,
    take_joiners: Callable[[list[Request]], list[Request]],
) -> None:
    """Decode `requests` (greedy or sampling, same key) and every request that joins them, as the
    module docstring describes; each is completed as soon as its rows have ended.
    `take_joiners(requests)` (the pool's) updates `requests` and returns the joiners."""
    search = GreedySearch(model, options)
    cohort = list(requests)
    while True:
        for same in _by_options(cohort):
            _join(search, model, same, replace(same[0].options, n_threads=options.n_threads), start, outputs)
        if not search.num_rows:
            return
        for finished in search.step():
            _deliver(finished, outputs)
        # A state that cannot take rows (a tensor-parallel or Bergamot model) decodes its batch alone.
        cohort = take_joiners(requests) if callable(getattr(type(search.state), "extend", None)) else []


class _Cohort:
    """Requests that joined at one step: their rows' owners, and the hypotheses found so far."""

    def __init__(self, requests: list[Request], router: StepRouter, rows, options: DecodingOptions, model) -> None:
        self.router, self.rows, self.options, self.model = router, rows, options, model
        self.found: list = [None] * len(rows)
        self.rows_left = {r.id: 0 for r in requests}
        for row in rows:
            self.rows_left[router.owners[row.batch_id][0].id] += 1

    def finish(self, index: int, hypothesis) -> Request | None:
        """Record row `index`'s hypothesis; its request when that was the request's last row."""
        self.found[index] = hypothesis
        request = self.router.owners[self.rows[index].batch_id][0]
        self.rows_left[request.id] -= 1
        return request if self.rows_left[request.id] == 0 else None

    def results(self, request: Request) -> list[DecodingResult]:
        """The request's decoding results, its examples numbered from 0 as if decoded alone."""
        first = next(b for b, (r, _) in enumerate(self.router.owners) if r is request)
        mine = [
            (row.batch_id - first, [h])
            for row, h in zip(self.rows, self.found)
            if first <= row.batch_id < first + len(request)
        ]
        return collect(self.model, self.options, len(request), mine)


def _by_options(requests: list[Request]) -> list[list[Request]]:
    """The requests grouped by their options (first-seen order): a group starts in one call."""
    groups: dict[DecodingOptions, list[Request]] = {}
    for r in requests:
        groups.setdefault(r.options, []).append(r)
    return list(groups.values())


def _join(search: GreedySearch, model, cohort: list[Request], options, start: Start, outputs: Outputs) -> None:
    """Start the cohort's rows (equal options) and add them to the search; a cohort that fails to
    start is retried request by request, so that only the culprit fails."""
    try:
        state, start_tokens, rows_options = start(cohort, options)
        router = StepRouter(cohort)
        seed_ids = [i for r in cohort for i in range(len(r))]
        started = begin(model, state, start_tokens, rows_options, router.on_step, router.should_stop, seed_ids)
        tag = _Cohort(cohort, router, started.rows, rows_options, model)
        finished = search.add(
            state, started, on_step=router.on_step, should_stop=router.should_stop, tag=tag, options=rows_options
        )
    except Exception as exc:  # noqa: BLE001 - one bad request must not fail the batch
        if len(cohort) == 1:
            cohort[0].set_exception(exc)
            return
        for r in cohort:
            _join(search, model, [r], options, start, outputs)
        return
    for f in finished:
        _deliver(f, outputs)


def _deliver(finished: Finished, outputs: Outputs) -> None:
    """Complete the request of a finished row if it was that request's last row."""
    cohort: _Cohort = finished.tag
    request = cohort.finish(finished.index, finished.hypothesis)
    if request is not None:
        settle(request, request.id in cohort.router.stopped, lambda: outputs(cohort.results(request)))


def gather_in_order(per_request: list[list], batches: list[list[int]]) -> list:
    """Outputs of the sub-batches of one call (built by `inputs.split_batches`) in input order."""
    out: list = [None] * sum(len(b) for b in batches)
    for outputs, indices in zip(per_request, batches):
        for i, value in zip(indices, outputs):
            out[i] = value
    return out


def step_pusher(put, tokenizer):
    """The on_step of a streamed request: name the token, detokenize incrementally, `put` the step
    (a StepChannel's push, or a queue's). Runs on the worker thread; it never waits."""
    detokenizers: dict[tuple[int, int], object] = {}  # one per sequence: (batch_id, hypothesis_id)

    def push(step: GenerationStepResult) -> None:
        token, text = None, None
        if tokenizer is not None:
            token = tokenizer.ids_to_tokens([[step.token_id]], target=True)[0][0]
            sequence = (step.batch_id, step.hypothesis_id)
            detok = detokenizers.get(sequence)
            if detok is None:
                detok = detokenizers[sequence] = tokenizer.detokenizer()
            text = detok.step(step.token_id) or ""
        put(replace(step, token=token, text=text))

    return push


def token_names(tokenizer, ids: list[list[int]]) -> list[list[str]] | list[list[int]]:
    """Token strings of target ids, or the ids themselves for a model without a tokenizer."""
    return ids if tokenizer is None else tokenizer.ids_to_tokens(ids, target=True)
