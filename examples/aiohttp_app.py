"""The same service on aiohttp: `POST /translate`, and `POST /generate` streaming Server-Sent
Events through a `web.StreamResponse`. The engines live in the app's `cleanup_ctx`.

    python examples/aiohttp_app.py [TRANSLATION_MODEL] [GENERATION_MODEL]     (en-pt, smollm2)

A client that disconnects makes the next `write` fail, which leaves the stream's `async with`
and stops decoding.
"""

import asyncio
import json
import os
import sys

from aiohttp import web

from aiotranslate import Generator, Translator

TRANSLATOR = web.AppKey("translator", Translator)
GENERATOR = web.AppKey("generator", Generator)


def create_app(translation_model: str, generation_model: str) -> web.Application:
    async def engines(app: web.Application):
        translator = await asyncio.to_thread(Translator, translation_model)
        generator = await asyncio.to_thread(Generator, generation_model)
        async with translator, generator:
            app[TRANSLATOR], app[GENERATOR] = translator, generator
            yield

    app = web.Application()
    app.cleanup_ctx.append(engines)
    app.router.add_post("/translate", translate)
    app.router.add_post("/generate", generate)
    return app


async def translate(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"translations": await request.app[TRANSLATOR].translate(body["text"])})


async def generate(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    options = {"max_length": body.get("max_tokens", 64)}
    async with request.app[GENERATOR].generate_tokens(body["prompt"], **options) as steps:
        async for step in steps:
            await response.write(f"data: {json.dumps({'text': step.text})}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


if __name__ == "__main__":
    translation = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TRANSLATION_MODEL", "en-pt")
    generation = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("GENERATION_MODEL", "smollm2")
    web.run_app(create_app(translation, generation), host="127.0.0.1", port=8080)
