"""The HTTP server as clients see it: a real uvicorn on 127.0.0.1 (in a thread) serving tiny random
models, spoken to with httpx. Answers equal the engines' own; streams arrive as SSE chunks; a full
queue answers 429; a client that disconnects cancels its request; errors are clear."""

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiotranslate import Encoder, Generator, Translator
from aiotranslate.server import ServerConfig, create_app

sys.path.insert(0, str(Path(__file__).parents[1]))
from live_server import live_server  # noqa: E402
from tiny_models import tiny_models  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])  # the server runs its own loop
CONFIG = ServerConfig(intra_threads=1, max_queued_batches=1, max_tokens=4000, max_body_bytes=16384, max_texts=8)
LONG = {"prompt": "the frog", "max_tokens": 4000, "min_tokens": 4000, "temperature": 0}  # runs while the test acts


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def base_url(models):
    specs = [f"marian={models.translator}", f"gpt2={models.generator}", f"sbert={models.encoder}"]
    with live_server(create_app(specs, CONFIG)) as url:
        yield url


@pytest.fixture
async def client(base_url):
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        yield client


async def sse_data(response: httpx.Response) -> list:
    """The `data:` payloads of an SSE response, JSON-decoded ("[DONE]" kept as is)."""
    assert response.headers["content-type"].startswith("text/event-stream")
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:])
            async for line in response.aiter_lines() if line.startswith("data: ")]  # fmt: skip


async def metric(client: httpx.AsyncClient, name: str, **labels) -> float:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def until(condition, timeout=30.0):
    """Poll an async condition; the elapsed seconds once it holds."""
    start = time.monotonic()
    while not await condition():
        assert time.monotonic() - start < timeout, "condition not reached"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def streamed_text(generator: Generator, prompt, **options) -> str:
    """The text the engine streams (what the server relays; with a random model it may differ from
    decoding all tokens at once, where invalid UTF-8 becomes replacement characters)."""
    async with generator.generate_tokens(prompt, include_prompt_in_result=False, **options) as steps:
        return "".join([step.text async for step in steps])


async def test_models_health_and_metrics_describe_the_served_models(client):
    listed = (await client.get("/v1/models")).json()
    assert [(m["id"], m["task"]) for m in listed["data"]] == [
        ("marian", "translation"), ("gpt2", "generation"), ("sbert", "embedding")]  # fmt: skip
    assert (await client.get("/health")).json() == {"status": "ok", "models": ["marian", "gpt2", "sbert"]}
    metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'aiotranslate_queued_batches{model="gpt2"} 0.0' in metrics.text
    assert await metric(client, "aiotranslate_requests_total", endpoint="/health", status="200") >= 1


async def test_translations_equal_the_translators(client, models):
    texts = ["the small green frog", "Tom asked his teacher", "it 's water"]
    response = await client.post("/v1/translations", json={"text": texts, "beam_size": 1, "max_decoding_length": 10})
    async with Translator(models.translator, intra_threads=1) as translator:
        expected = await translator.translate(texts, beam_size=1, max_decoding_length=10)
    assert response.json() == {"model": "marian", "translations": expected}
    single = await client.post("/v1/translations", json={"text": texts[0], "model": "marian", "beam_size": 1,
                                                         "max_decoding_length": 10})  # fmt: skip
    assert single.json()["translations"] == expected[:1]


async def test_completion_streamed_or_not_is_the_greedy_generation(client, models):
    body = {"prompt": "the old stone", "max_tokens": 12, "temperature": 0}
    whole = (await client.post("/v1/completions", json=body)).json()
    async with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        chunks = await sse_data(response)
    async with Generator(models.generator, intra_threads=1) as generator:
        expected = await streamed_text(generator, "the old stone", max_length=12)
        prompt_tokens = len(generator.tokenizer.encode(["the old stone"])[0])
    choice = whole["choices"][0]
    assert whole["object"] == "text_completion" and choice["text"] == expected
    assert choice["finish_reason"] in ("stop", "length")
    usage = whole["usage"]
    assert usage["prompt_tokens"] == prompt_tokens and usage["total_tokens"] == prompt_tokens + usage["completion_tokens"]
    assert chunks[-1] == "[DONE]" and len(chunks) > 3  # one chunk per token, not one at the end
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks[:-1])
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == expected
    assert chunks[-2]["choices"][0]["finish_reason"] == choice["finish_reason"]


async def test_chat_completion_applies_the_template_and_streams_the_role_first(client, models):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a frog ?"}]
    body = {"messages": messages, "max_tokens": 10, "temperature": 0}
    whole = (await client.post("/v1/chat/completions", json=body)).json()
    async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        chunks = await sse_data(response)
    async with Generator(models.generator, intra_threads=1) as generator:
        prompt = generator.tokenizer.apply_chat_template(messages)
        expected = await streamed_text(generator, prompt, max_length=10)
    assert whole["object"] == "chat.completion"
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": expected}
    assert whole["usage"]["prompt_tokens"] == len(prompt)
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1]) == expected
    assert chunks[-1] == "[DONE]"


async def test_embeddings_equal_the_encoders(client, models):
    texts = ["a frog sat on a stone", "river water"]
    response = (await client.post("/v1/embeddings", json={"input": texts})).json()
    async with Encoder(models.encoder, intra_threads=1) as encoder:
        expected = await encoder.embed(texts)
    assert [d["index"] for d in response["data"]] == [0, 1] and response["model"] == "sbert"
    np.testing.assert_allclose([d["embedding"] for d in response["data"]], expected, rtol=1e-6)
    assert response["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("/v1/completions", b"{not json", 400, "invalid JSON body: Expecting property name"),
        ("/v1/completions", b"prompt=a", 400, "Content-Type: application/json"),
        ("/v1/completions", {"prompt": "a", "stop": ["."]}, 422, "stop: Extra inputs are not permitted"),
        ("/v1/completions", {"prompt": "a", "max_tokens": 0}, 422, "max_tokens: Input should be greater"),
        ("/v1/completions", {"prompt": "a", "max_tokens": 5000}, 400, "more than this server's limit of 4000"),
        ("/v1/completions", {"prompt": "a", "model": "gpt3"}, 404, "model 'gpt3' is not served here"),
        ("/v1/completions", {"prompt": "a", "model": "marian"}, 400, "is a translation model: use /v1/translations"),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, 422, "messages.0.role"),
        ("/v1/translations", {"text": []}, 400, "text is an empty list"),
        ("/v1/translations", {"text": ["a"] * 9}, 400, "more than this server's limit of 8"),
        ("/v1/translations", {"text": ["a"], "beam_size": 2, "sampling_topk": -1}, 422, "sampling_topk"),
        ("/v1/nowhere", {}, 404, "Not Found"),
    ],
)  # fmt: skip
async def test_bad_requests_get_clear_errors(client, path, body, status, message):
    if isinstance(body, bytes):  # raw: JSON-typed when it looks like JSON
        kwargs = {"content": body, "headers": {"content-type": "application/json"} if body[:1] == b"{" else {}}
    else:
        kwargs = {"json": body}
    response = await client.post(path, **kwargs)
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"] and error["code"] == status


async def test_bodies_over_the_limit_are_refused(client):
    response = await client.post("/v1/translations", json={"text": ["x" * 20000]})
    assert response.status_code == 413


async def test_full_queue_answers_429_and_disconnected_clients_cancel_their_requests(client):
    gone_before = await metric(client, "aiotranslate_client_disconnects_total", endpoint="/v1/completions")
    async with client.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as running:
        assert running.status_code == 200
        lines = running.aiter_lines()
        started = time.monotonic()
        for _ in range(200):  # 100 tokens (a data line and a blank line each): it runs on the only worker
            await anext(lines)
        per_100_tokens = time.monotonic() - started

        # Sampling: it cannot join the running greedy batch (continuous batching), so it waits.
        queued = asyncio.ensure_future(client.post("/v1/completions", json={**LONG, "temperature": 0.7}))
        await until(lambda: has_metric(client, "aiotranslate_queued_batches", 1, model="gpt2"))
        refused = await client.post("/v1/completions", json=LONG)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "busy" in refused.json()["error"]["message"]

        queued.cancel()  # its client goes away while it waits: it leaves the queue
        await until(lambda: has_metric(client, "aiotranslate_queued_batches", 0, model="gpt2"))
    # Leaving the block closes the stream's connection mid-stream: its generation stops.
    stopped_in = await until(lambda: has_metric(client, "aiotranslate_active_batches", 0, model="gpt2"))
    assert stopped_in < 0.5 + 10 * per_100_tokens  # finishing would take about 39 x per_100_tokens
    await until(lambda: has_metric(client, "aiotranslate_client_disconnects_total", gone_before + 2,
                                   endpoint="/v1/completions"))  # fmt: skip
    quick = await client.post("/v1/completions", json={"prompt": "a", "max_tokens": 2})
    assert quick.status_code == 200


async def has_metric(client, name, value, **labels) -> bool:
    return await metric(client, name, **labels) == value
