"""Glue between one merged worker batch and the requests it serves.

A worker runs the examples of several requests as one batch. `step_hook` routes each decoded token
back to its request (its stream, its stop flag); `complete` hands each request its slice of the
outputs; `gather_in_order` puts the sub-batches of one call back in input order.
"""

from __future__ import annotations

from dataclasses import replace

from ..results import GenerationStepResult
from ..runtime import Request


class StepRouter:
    """The decoding step hook of a merged batch: batch row -> (request, index in it)."""

    def __init__(self, requests: list[Request]) -> None:
        self.owners = [(r, i) for r in requests for i in range(len(r))]
        self.stopped: set[int] = set()  # ids of requests stopped before their end

    def __call__(self, step: GenerationStepResult) -> bool:
        request, index = self.owners[step.batch_id]
        if request.should_stop():
            self.stopped.add(request.id)
            return True
        if request.on_step is not None:
            request.on_step(replace(step, batch_id=index))
        return False


def complete(requests: list[Request], outputs: list, router: StepRouter | None = None) -> None:
    """Give each request its slice of outputs (in batch order); a request that was stopped
    early (cancelled, past its deadline) is completed as such instead."""
    start = 0
    for r in requests:
        part = outputs[start : start + len(r)]
        start += len(r)
        if (router is not None and r.id in router.stopped) or r.should_stop():
            r.finish_stopped()
        else:
            r.set_result(part)


def gather_in_order(per_request: list[list], batches: list[list[int]]) -> list:
    """Outputs of the sub-batches of one call (built by `inputs.split_batches`) in input order."""
    out: list = [None] * sum(len(b) for b in batches)
    for outputs, indices in zip(per_request, batches):
        for i, value in zip(indices, outputs):
            out[i] = value
    return out


def step_pusher(channel, tokenizer):
    """The on_step of a streamed request: name the token, detokenize incrementally, push to the
    channel. Runs on the worker thread; it never waits (the channel coalesces)."""
    detokenizers: dict[int, object] = {}

    def push(step: GenerationStepResult) -> None:
        token, text = None, None
        if tokenizer is not None:
            token = tokenizer.ids_to_tokens([[step.token_id]], target=True)[0][0]
            detok = detokenizers.get(step.hypothesis_id)
            if detok is None:
                detok = detokenizers[step.hypothesis_id] = tokenizer.detokenizer()
            text = detok.step(step.token_id) or ""
        channel.push(replace(step, token=token, text=text))

    return push


def token_names(tokenizer, ids: list[list[int]]) -> list[list[str]] | list[list[int]]:
    """Token strings of target ids, or the ids themselves for a model without a tokenizer."""
    return ids if tokenizer is None else tokenizer.ids_to_tokens(ids, target=True)
