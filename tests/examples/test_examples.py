"""Every script of examples/ runs as documented, pointed at tiny models through its argument or
environment variable, and gives what the engines give."""

import asyncio
import json
import runpy
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aiotranslate import Translator

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_models import tiny_models  # noqa: E402

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory)


def run_script(name: str, *args, monkeypatch) -> dict:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *map(str, args)])
    return runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def translate(model: Path, texts: list[str]) -> list[str]:
    async def run():
        async with Translator(model, intra_threads=1) as translator:
            return await translator.translate(texts)

    return asyncio.run(run())


def test_streaming_prints_until_its_early_exit(models, monkeypatch, capsys):
    run_script("streaming.py", models.generator, "the frog", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") <= 2  # stops after its first line


@pytest.mark.parametrize("script", ["uvloop_main.py", "threads.py"])
def test_concurrent_translation_scripts_print_each_translation(models, monkeypatch, capsys, script):
    namespace = run_script(script, models.translator, monkeypatch=monkeypatch)
    sentences = namespace["SENTENCES"]
    expected = [f"{s} -> {t}" for s, t in zip(sentences, translate(models.translator, sentences))]
    assert capsys.readouterr().out.splitlines() == expected


def test_batch_file_translates_every_line_in_order(models, monkeypatch, tmp_path):
    lines = [f"the frog {i} sat on the stone" if i % 7 else "" for i in range(300)]  # two chunks of the script
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_script("batch_file.py", source, target, models.translator, monkeypatch=monkeypatch)
    kept = [line for line in lines if line]
    done = iter(translate(models.translator, kept))
    assert target.read_text(encoding="utf-8").splitlines() == [next(done) if line else "" for line in lines]


def test_fastapi_app_translates_and_streams(models, monkeypatch):
    monkeypatch.setenv("TRANSLATION_MODEL", str(models.translator))
    monkeypatch.setenv("GENERATION_MODEL", str(models.generator))
    app = runpy.run_path(str(EXAMPLES / "fastapi_app.py"))["app"]
    with TestClient(app) as client:
        response = client.post("/translate", json={"text": ["a small frog", "the river"]})
        assert response.json() == {"translations": translate(models.translator, ["a small frog", "the river"])}
        with client.stream("POST", "/generate", json={"prompt": "a frog", "max_tokens": 6}) as stream:
            events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
        assert 1 <= len(events) <= 6 and all("text" in e for e in events)


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_aiohttp_app_translates_and_streams(models, aiohttp_client):
    create_app = runpy.run_path(str(EXAMPLES / "aiohttp_app.py"))["create_app"]
    client = await aiohttp_client(create_app(str(models.translator), str(models.generator)))
    response = await client.post("/translate", json={"text": ["a small frog"]})
    assert (await response.json())["translations"] == await asyncio.to_thread(translate, models.translator, ["a small frog"])
    response = await client.post("/generate", json={"prompt": "a frog", "max_tokens": 6})
    assert response.headers["Content-Type"] == "text/event-stream"
    data = [line[6:] for line in (await response.text()).splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]" and 1 <= len(data) - 1 <= 6
