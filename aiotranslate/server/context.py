"""What the routes get from the app: its configuration, models and metrics (the lifespan's state),
the checks they share, and cleanups that run once a response is over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from .engines import ServedModel, Task
from .http import ApiError
from .metrics import Metrics

ENDPOINTS: dict[Task, str] = {
    "translation": "/v1/translations",
    "generation": "/v1/completions or /v1/chat/completions",
    "embedding": "/v1/embeddings",
}


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the server and the engine options of its models."""

    max_body_bytes: int = 1 << 20
    max_tokens: int = 2048  # the most tokens one request may ask for (max_tokens, max_decoding_length)
    default_chat_tokens: int = 512  # chat completions without max_tokens (completions default to 16)
    max_texts: int = 256  # texts in one translation or embedding request
    retry_after_s: int = 1  # what a 429 tells clients to wait
    device: str = "cpu"  # "cpu", "cuda" or "auto", as the engines take it
    device_index: int | tuple[int, ...] = 0  # the GPUs, inter_threads workers on each
    compute_type: str = "default"
    inter_threads: int = 1
    intra_threads: int = 0
    max_queued_batches: int = 0

    def engine_options(self) -> dict:
        return dict(
            device=self.device,
            device_index=self.device_index if isinstance(self.device_index, int) else list(self.device_index),
            compute_type=self.compute_type,
            inter_threads=self.inter_threads,
            intra_threads=self.intra_threads,
            max_queued_batches=self.max_queued_batches,
        )


@dataclass(frozen=True)
class AppState:
    config: ServerConfig
    models: dict[str, ServedModel]
    metrics: Metrics

    def model(self, name: str | None, task: Task) -> ServedModel:
        """The model a request names (404 if not served, 400 if it does another task), or the
        first model of the task."""
        if name is None:
            found = next((m for m in self.models.values() if m.task == task), None)
            if found is None:
                raise ApiError(400, f"this server has no {task} model")
            return found
        if name not in self.models:
            raise ApiError(404, f"model {name!r} is not served here; served: {', '.join(self.models)}")
        model = self.models[name]
        if model.task != task:
            raise ApiError(400, f"model {name!r} is a {model.task} model: use {ENDPOINTS[model.task]}")
        return model


def app_state(request: Request) -> AppState:
    return request.state.app


async def response_exits() -> AsyncIterator[AsyncExitStack]:
    """Cleanups that run after the response is sent or abandoned: a stream opened by the route
    is closed there, so a client that disconnects mid-stream stops its generation."""
    async with AsyncExitStack() as stack:
        yield stack


State = Annotated[AppState, Depends(app_state)]
Exits = Annotated[AsyncExitStack, Depends(response_exits, scope="request")]


def tokenizer_of(model: ServedModel):
    tokenizer = model.engine.tokenizer
    if tokenizer is None:
        raise ApiError(400, f"model {model.name!r} ships no tokenizer: it cannot take text")
    return tokenizer


def check_at_most(value: int | None, limit: int, name: str) -> None:
    if value is not None and value > limit:
        raise ApiError(400, f"{name} is {value}, more than this server's limit of {limit}")


@contextmanager
def engine_errors() -> Iterator[None]:
    """An engine refuses a request (bad option value, token outside the vocabulary, no chat
    template) with ValueError or TypeError before admitting it: the client's fault, 400."""
    try:
        yield
    except (ValueError, TypeError) as e:
        raise ApiError(400, str(e)) from e
