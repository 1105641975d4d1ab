import sys

import pytest


@pytest.fixture
def without_cupy(monkeypatch):
    """`import cupy` fails, and aiotranslate is imported afresh (restored after the test)."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    for name in [m for m in sys.modules if m == "aiotranslate" or m.startswith("aiotranslate.")]:
        monkeypatch.delitem(sys.modules, name)
