"""OpenAI-compatible generation: `POST /v1/completions` and `POST /v1/chat/completions`.

Both read one token stream of the Generator, admitted with `generate_tokens_nowait` so that a full
queue answers 429 before anything is sent. With `"stream": true` the answer is Server-Sent Events
(FastAPI's `EventSourceResponse`): a `data: {chunk}` per text delta, a last chunk with the
finish_reason, then `data: [DONE]`. Without it, one JSON body when generation ends. Either way the
stream is closed once the response is over or abandoned (`Exits`), so a client that disconnects
stops its generation at the next step.

finish_reason is "stop" when the model ended the text (an end token) and "length" when max_tokens
(or the model's positions) ran out; the end token is not counted in `usage.completion_tokens`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.sse import EventSourceResponse, format_sse_event

from ..api.streaming import TokenStream
from .context import Exits, State, check_at_most, engine_errors, tokenizer_of
from .engines import ServedModel
from .http import ApiError, unless_disconnected
from .metrics import TokenTimer
from .schemas import ChatCompletionRequest, CompletionRequest, Sampling

router = APIRouter()
log = logging.getLogger("aiotranslate.server")

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for completions
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of the stream


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request, state: State, exits: Exits):
    model = state.model(body.model, "generation")
    with engine_errors():
        prompt = tokenizer_of(model).encode([body.prompt])[0]
    max_tokens = body.max_tokens or min(DEFAULT_COMPLETION_TOKENS, state.config.max_tokens)
    return await generate(request, state, exits, model, prompt, body, max_tokens, TextCompletion(model.name))


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request, state: State, exits: Exits):
    model = state.model(body.model, "generation")
    tokenizer = tokenizer_of(model)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ApiError(400, f"model {model.name!r} has no chat template: use /v1/completions")
    with engine_errors():
        prompt = tokenizer.apply_chat_template([m.model_dump() for m in body.messages])
    max_tokens = body.max_completion_tokens or body.max_tokens or min(state.config.default_chat_tokens, state.config.max_tokens)
    return await generate(request, state, exits, model, prompt, body, max_tokens, ChatCompletion(model.name))


async def generate(request: Request, state: State, exits: Exits, model: ServedModel, prompt: list[int],
                   body: Sampling, max_tokens: int, reply: Reply):  # fmt: skip
    check_at_most(max_tokens, state.config.max_tokens, "max_tokens")
    with engine_errors():
        stream = model.engine.generate_tokens_nowait(prompt, **body.generation_options(max_tokens))
    await exits.enter_async_context(stream)
    tokens = Tokens(stream, model.engine.end_token_ids, TokenTimer(state.metrics, model.name))
    if body.stream:
        return EventSourceResponse(events(reply, tokens), headers=SSE_HEADERS)
    text = await unless_disconnected(request, tokens.text())
    usage = {"prompt_tokens": len(prompt), "completion_tokens": tokens.count,
             "total_tokens": len(prompt) + tokens.count}  # fmt: skip
    return {**reply.envelope(reply.final_choice(text, tokens.finish_reason), chunk=False), "usage": usage}


class Tokens:
    """A token stream read as OpenAI reports it: text deltas, then the token count and finish reason."""

    def __init__(self, stream: TokenStream, end_ids: tuple[int, ...], timer: TokenTimer) -> None:
        self._stream = stream
        self._end_ids = end_ids
        self._timer = timer
        self.finish_reason: str | None = None

    @property
    def count(self) -> int:
        return self._timer.count

    async def deltas(self) -> AsyncIterator[str]:
        async for step in self._stream:
            if step.is_last and step.token_id in self._end_ids:
                self.finish_reason = "stop"
                break
            self._timer.token()
            if step.text:
                yield step.text
        self.finish_reason = self.finish_reason or "length"

    async def text(self) -> str:
        return "".join([delta async for delta in self.deltas()])


async def events(reply: Reply, tokens: Tokens) -> AsyncIterator[bytes]:
    """The SSE body: an opening chunk (chat: the role), the deltas, the finish_reason, [DONE]."""
    opening = reply.opening_chunk()
    if opening is not None:
        yield sse(opening)
    try:
        async for delta in tokens.deltas():
            yield sse(reply.envelope(reply.delta_choice(delta, None)))
    except Exception as e:  # the status line is sent already: report the failure in the stream
        log.exception("generation failed mid-stream")
        yield sse({"error": {"message": str(e), "type": "server_error", "code": 500}})
    else:
        yield sse(reply.envelope(reply.delta_choice("", tokens.finish_reason)))
    yield format_sse_event(data_str="[DONE]")


def sse(data: dict) -> bytes:
    return format_sse_event(data_str=json.dumps(data, ensure_ascii=False))


class Reply:
    """The envelope shared by one response's chunks or body; subclasses shape the choices."""

    object: str
    chunk_object: str
    id_prefix: str

    def __init__(self, model: str) -> None:
        self.id = f"{self.id_prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def envelope(self, choice: dict, *, chunk: bool = True) -> dict:
        obj = self.chunk_object if chunk else self.object
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": [choice]}

    def opening_chunk(self) -> dict | None:
        return None

    def delta_choice(self, text: str, finish_reason: str | None) -> dict:
        raise NotImplementedError

    def final_choice(self, text: str, finish_reason: str | None) -> dict:
        raise NotImplementedError


class TextCompletion(Reply):
    object = chunk_object = "text_completion"
    id_prefix = "cmpl"

    def delta_choice(self, text: str, finish_reason: str | None) -> dict:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

    final_choice = delta_choice


class ChatCompletion(Reply):
    object = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def opening_chunk(self) -> dict:
        return self.envelope({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})

    def delta_choice(self, text: str, finish_reason: str | None) -> dict:
        delta = {"content": text} if text else {}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def final_choice(self, text: str, finish_reason: str | None) -> dict:
        message = {"role": "assistant", "content": text}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
