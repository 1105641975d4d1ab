"""The hand-written stubs of the compiled kernels (`aiotranslate/_native/*.pyi`; Cython writes none)
match the built modules, name for name and parameter for parameter (mypy's stubtest)."""

import subprocess
import sys
from pathlib import Path

import pytest

import aiotranslate._native as native
from aiotranslate._native import load

ROOT = Path(__file__).parents[1]
MODULES = sorted(p.stem for p in (ROOT / "native").glob("*.pyx"))


def test_every_kernel_module_has_a_stub():
    stubs = Path(native.__file__).parent
    assert MODULES and [m for m in MODULES if not (stubs / f"{m}.pyi").exists()] == []


@pytest.mark.timeout(600)
def test_stubs_match_the_compiled_modules(tmp_path):
    if any(load(m) is None for m in MODULES):
        pytest.skip("the native kernels are not built")
    here = ROOT / "tests" / "stubtest"
    command = [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", str(here / "mypy.ini"),
               "--allowlist", str(here / "allowlist.txt"), "--ignore-unused-allowlist",
               *(f"aiotranslate._native.{m}" for m in MODULES)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)  # cwd: its cache out of the tree
    assert run.returncode == 0, run.stdout + run.stderr
