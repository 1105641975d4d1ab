"""Fixtures shared by the op tests."""

import pytest

from aiotranslate._native import load


@pytest.fixture(params=["avx512", "avx2", "base"])
def isa(request):
    """Each instruction set of the float32 kernels (`_gemm`: GEMM, weight-only int8, fused attention)
    that the CPU has, in force for the test; the CPU's best again after it."""
    gemm = load("_gemm")
    if gemm is None:
        pytest.skip("native kernels not built")
    try:
        gemm._use_instruction_set(request.param)
    except ValueError:
        pytest.skip(f"this CPU cannot run {request.param}")
    yield request.param
    gemm._use_instruction_set("auto")
