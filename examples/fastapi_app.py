"""Your own FastAPI app with aiotranslate engines: `POST /translate`, and `POST /generate` streaming
tokens as Server-Sent Events. (`aiotranslate serve` is the ready-made server.)

    TRANSLATION_MODEL=en-pt GENERATION_MODEL=smollm2 uvicorn examples.fastapi_app:app

The lifespan owns the engines (loaded in a thread, closed at shutdown); a full queue answers 429; a
client that disconnects from /generate cancels the stream's `async with`, which stops decoding.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse
from pydantic import BaseModel

from aiotranslate import Generator, QueueFull, Translator


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    translator = await asyncio.to_thread(Translator, os.environ.get("TRANSLATION_MODEL", "en-pt"))
    generator = await asyncio.to_thread(Generator, os.environ.get("GENERATION_MODEL", "smollm2"))
    async with translator, generator:
        yield {"translator": translator, "generator": generator}


app = FastAPI(lifespan=lifespan)


@app.exception_handler(QueueFull)
async def busy(request: Request, exc: QueueFull) -> JSONResponse:
    return JSONResponse({"error": "busy, retry later"}, status_code=429, headers={"Retry-After": "1"})


class TranslateBody(BaseModel):
    text: list[str]


class GenerateBody(BaseModel):
    prompt: str
    max_tokens: int = 64


@app.post("/translate")
async def translate(body: TranslateBody, request: Request) -> dict:
    admitted = request.state.translator.translate_nowait(body.text)  # QueueFull -> 429 at once
    return {"translations": await admitted}


@app.post("/generate", response_class=EventSourceResponse)
async def generate(body: GenerateBody, request: Request) -> AsyncIterator[dict]:
    options = {"max_length": body.max_tokens}
    async with request.state.generator.generate_tokens(body.prompt, **options) as steps:
        async for step in steps:
            yield {"text": step.text}
