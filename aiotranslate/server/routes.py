"""Translation, embeddings, and the service routes (models, health, metrics).

Requests are admitted with the engines' `*_nowait` methods, so a full queue answers 429 at once
instead of piling up waiting handlers; a client that disconnects cancels its request.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .context import State, check_at_most, engine_errors, tokenizer_of
from .http import ApiError, unless_disconnected
from .schemas import EmbeddingRequest, TranslationRequest

router = APIRouter()


def as_list(text: str | list[str], limit: int, name: str) -> list[str]:
    texts = [text] if isinstance(text, str) else text
    if not texts:
        raise ApiError(400, f"{name} is an empty list")
    check_at_most(len(texts), limit, f"the number of texts in {name}")
    return texts


@router.post("/v1/translations")
async def translations(body: TranslationRequest, request: Request, state: State) -> dict:
    """`{"text": str | [str], "model"?, options}` -> `{"model", "translations": [str]}` in order."""
    texts = as_list(body.text, state.config.max_texts, "text")
    check_at_most(body.max_decoding_length, state.config.max_tokens, "max_decoding_length")
    model = state.model(body.model, "translation")
    with engine_errors():
        admitted = model.engine.translate_nowait(texts, **body.options())
    return {"model": model.name, "translations": await unless_disconnected(request, admitted)}


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request, state: State) -> dict:
    """OpenAI's embeddings: one vector per input text, as the Encoder's `embed` computes it."""
    texts = as_list(body.input, state.config.max_texts, "input")
    model = state.model(body.model, "embedding")
    with engine_errors():
        ids = tokenizer_of(model).encode(texts)
        admitted = model.engine.embed_nowait(ids)
    vectors = await unless_disconnected(request, admitted)
    tokens = sum(map(len, ids))
    return {
        "object": "list",
        "model": model.name,
        "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


@router.get("/v1/models")
async def models(state: State) -> dict:
    return {
        "object": "list",
        "data": [
            {"id": m.name, "object": "model", "created": m.created, "owned_by": "aiotranslate", "task": m.task}
            for m in state.models.values()
        ],
    }


@router.get("/health")
async def health(state: State) -> dict:
    return {"status": "ok", "models": list(state.models)}


@router.get("/metrics")
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
