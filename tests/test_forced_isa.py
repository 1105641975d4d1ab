"""AIOTRANSLATE_FORCE_CPU_ISA (CTranslate2's CT2_FORCE_CPU_ISA): a cap on the instruction set of the
GEMM, attention and quantized kernels, read when they load, so each case runs in a fresh process."""

import os
import subprocess
import sys

import numpy as np
import pytest

from aiotranslate import _native
from aiotranslate.ops import reference

gemm = _native.load("_gemm")
quantized = _native.load("_qgemm")
needs_native = pytest.mark.skipif(gemm is None or quantized is None, reason="native kernels not built")

# One row against packed weights (two panels and a partial third) and an int8 linear of the same.
PROBE = """
import sys
import numpy as np
from aiotranslate import get_supported_compute_types, ops
from aiotranslate.ops.quantized import isa
rng = np.random.default_rng(0)
x, w = rng.standard_normal((1, 200), np.float32), rng.standard_normal((130, 200), np.float32)
y = ops.linear(x, ops.PackedWeight.pack(w))
np.save(sys.argv[1], np.stack([y, ops.int8_linear(x, ops.Int8Weight.quantize(w))]))
print(isa()["int8_weight_only"], isa()["int8"], " ".join(sorted(get_supported_compute_types("cpu"))))
"""
QUANTIZED_ORDER = ["portable", "avx2", "avx512"]


def probe(value: str, out) -> subprocess.CompletedProcess:
    """PROBE in a fresh process, run from out's folder: `python -c` puts the working directory first on
    the path, and from a source checkout its unbuilt package would shadow the installed one."""
    env = dict(os.environ, AIOTRANSLATE_FORCE_CPU_ISA=value)
    return subprocess.run([sys.executable, "-c", PROBE, str(out)], env=env, cwd=out.parent, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@needs_native
@pytest.mark.parametrize(
    ("value", "float_cap", "int8_cap"), [("AVX2", "avx2", "avx2"), ("generic", "base", "portable")]
)
def test_the_cap_holds_and_the_results_stay_right(tmp_path, value, float_cap, int8_cap):
    out = tmp_path / "out.npy"
    run = probe(value, out)
    assert run.returncode == 0, run.stderr
    float_isa, int8_isa, *types = run.stdout.split()
    sets = gemm.INSTRUCTION_SETS  # lowest first
    assert float_isa == sets[min(sets.index(gemm.instruction_set()), sets.index(float_cap))]
    best_int8 = QUANTIZED_ORDER.index(quantized.isa())
    assert int8_isa == QUANTIZED_ORDER[min(best_int8, QUANTIZED_ORDER.index(int8_cap))]
    assert "bfloat16" not in types and {"float32", "int8"} <= set(types)  # no AVX512_BF16 under the cap

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 200), np.float32), rng.standard_normal((130, 200), np.float32)
    y, q = np.load(out)
    np.testing.assert_allclose(y, x.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(q, reference.int8_linear(x, *reference.quantize_rows(w), None, 0, None),
                               rtol=1e-5, atol=1e-4)  # fmt: skip


@needs_native
def test_an_unknown_set_is_refused(tmp_path):
    run = probe("avx3", tmp_path / "out.npy")
    assert run.returncode != 0
    assert "AIOTRANSLATE_FORCE_CPU_ISA='avx3': expected AVX512, AVX2 or GENERIC" in run.stderr
