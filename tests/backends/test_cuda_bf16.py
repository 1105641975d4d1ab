"""bfloat16 weights on the GPU (`models.device_bf16`, `backends.cuda.bf16`) against numpy references
of the same arithmetic: x and W rounded to bfloat16 (`reference.bf16_linear`: exact products,
float64 sums), so the only difference left is cuBLAS's float32 summation, well inside
rtol 1e-4 + 1e-5 sqrt(K) on O(1) outputs; skipping the rounding of x (about 2^-9 relative) fails it.

Skipped without cupy, a CUDA device, or compute capability 8.0.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading

import numpy as np
import pytest

from gpu_support import HAVE_GPU, cupy, requires_gpu

from aiotranslate.models.device_bf16 import BF16DeviceEmbedding, BF16DeviceLinear, bf16_bits
from aiotranslate.ops import reference

BF16_GPU = HAVE_GPU and int(cupy.cuda.Device(0).compute_capability) >= 80
pytestmark = [*requires_gpu, pytest.mark.skipif(not BF16_GPU, reason="bfloat16 GEMMs need compute capability 8.0")]

ACTIVATIONS = [None, "relu", "gelu", "gelu_tanh", "silu"]


def rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def values(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def device_linear(w, bias=None):
    return BF16DeviceLinear(cupy.asarray(bf16_bits(w)), None if bias is None else cupy.asarray(bias))


def tol(k):
    return {"rtol": 1e-4, "atol": 1e-5 * math.sqrt(max(k, 1))}


@pytest.mark.parametrize("mkn", [(1, 1, 1), (1, 7, 5), (3, 17, 5), (5, 33, 77), (32, 512, 2048), (2, 1024, 96)])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_bf16_linear_matches_the_bf16_reference(mkn, act):
    """M = 1, N not a multiple of 8, K odd: cuBLAS needs no padding, only picks another kernel."""
    m, k, n = mkn
    rng = np.random.default_rng(30)
    x, w = rand(rng, (m, k)), rand(rng, (n, k), 1 / math.sqrt(k))
    bias, res = rand(rng, (n,)), rand(rng, (m, n))
    for b, r in [(None, None), (bias, None), (bias, res), (None, res)]:
        lin = device_linear(w, b)
        got = lin(cupy.asarray(x), activation=act, residual=None if r is None else cupy.asarray(r))
        assert got.dtype == np.float32 and got.shape == (m, n)
        want = reference.bf16_linear(x, w, b, reference.ACTIVATIONS[act], r)
        np.testing.assert_allclose(cupy.asnumpy(got), want, **tol(k))


def test_bf16_linear_rounds_its_input_to_bf16():
    """1 + 3 * 2^-9 is 1 + 2^-7 in bf16: a product of bf16 operands, not of the float32 input."""
    k = 1024
    lin = device_linear(np.ones((8, k), dtype=np.float32))
    got = cupy.asnumpy(lin(cupy.full((4, k), 1 + 3 * 2.0**-9, dtype=cupy.float32)))
    np.testing.assert_array_equal(got, np.full((4, 8), k * (1 + 2.0**-7), dtype=np.float32))


def test_bf16_linear_batched_input_out_and_in_place_residual():
    rng = np.random.default_rng(31)
    x, w, res = rand(rng, (2, 3, 64)), rand(rng, (40, 64), 0.125), rand(rng, (2, 3, 40))
    lin = device_linear(w)
    out = cupy.empty((2, 3, 40), dtype=cupy.float32)
    assert lin(cupy.asarray(x), activation="gelu", out=out) is out
    want = reference.bf16_linear(x.reshape(6, 64), w, None, reference.ACT_GELU).reshape(2, 3, 40)
    np.testing.assert_allclose(cupy.asnumpy(out), want, **tol(64))
    res_d = cupy.asarray(res)
    assert lin(cupy.asarray(x), residual=res_d, out=res_d) is res_d  # the residual stream, in place
    want = reference.bf16_linear(x.reshape(6, 64), w, None, reference.ACT_NONE, res.reshape(6, 40))
    np.testing.assert_allclose(cupy.asnumpy(res_d).reshape(6, 40), want, **tol(64))


def test_bf16_linear_empty_shapes():
    lin = device_linear(np.ones((4, 0), dtype=np.float32), np.arange(4, dtype=np.float32))
    got = lin(cupy.zeros((3, 0), dtype=cupy.float32))  # K = 0: an empty sum, then the bias
    np.testing.assert_array_equal(cupy.asnumpy(got), np.tile(np.arange(4, dtype=np.float32), (3, 1)))
    assert device_linear(np.ones((4, 8), dtype=np.float32))(cupy.zeros((0, 8), dtype=cupy.float32)).shape == (0, 4)


def test_bf16_linear_propagates_nan_and_inf():
    rng = np.random.default_rng(32)
    x, w = rand(rng, (4, 16)), rand(rng, (6, 16), 0.25)
    x[1, 3] = np.nan
    x[2, 5] = np.inf
    w[4, 7] = -np.inf
    got = cupy.asnumpy(device_linear(w)(cupy.asarray(x)))
    with np.errstate(invalid="ignore", over="ignore"):
        want = reference.bf16_linear(x, w)
    assert np.isnan(got[1]).all() and not np.isfinite(got[2]).any()
    np.testing.assert_allclose(got, want, **tol(16))  # NaN where NaN, the same infinities


def test_bf16_linear_refuses_host_inputs_and_bad_shapes():
    lin = device_linear(np.ones((4, 8), dtype=np.float32))
    with pytest.raises(TypeError, match="cupy array"):
        lin(np.zeros((2, 8), dtype=np.float32))
    with pytest.raises(TypeError):
        lin(cupy.zeros((2, 8), dtype=cupy.float16))
    with pytest.raises(ValueError, match="features"):
        lin(cupy.zeros((2, 7), dtype=cupy.float32))


def test_device_rounding_equals_the_host_rounding():
    """to_bf16 (the activations, on the device) and bf16_bits (the weights, on the host) agree bit
    for bit over every class of float32, NaN payloads included."""
    from aiotranslate.backends.cuda.bf16 import to_bf16

    rng = np.random.default_rng(33)
    patterns = rng.integers(0, 2**32, 200_000, dtype=np.uint32)
    patterns[:6] = [0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x7F800001, 0xFF800001, 0x00018000]
    a = patterns.view(np.float32)
    np.testing.assert_array_equal(cupy.asnumpy(to_bf16(cupy.asarray(a))), bf16_bits(a))


@pytest.mark.parametrize("on_device", [False, True])
def test_bf16_embedding_widens_rows_to_float32(on_device):
    rng = np.random.default_rng(34)
    bits = bf16_bits(rand(rng, (1000, 96)))
    ids = rng.integers(0, 1000, size=(3, 7))
    emb = BF16DeviceEmbedding(cupy.asarray(bits), scale=math.sqrt(96))
    got = emb(cupy.asarray(ids) if on_device else ids)
    assert got.dtype == np.float32 and got.shape == (3, 7, 96)
    want = reference.embedding(ids.reshape(-1), values(bits), math.sqrt(96)).reshape(3, 7, 96)
    np.testing.assert_array_equal(cupy.asnumpy(got), want)
    assert emb.table.dtype == np.float32 and emb.vocab_size == 1000 and emb.dim == 96
    with pytest.raises(ValueError, match="token id 1000"):
        emb([1, 1000])


def test_two_threads_with_their_own_streams_get_their_own_products():
    """cuBLAS runs on the stream current in each worker thread (CuPy sets it on the handle), after
    that thread's rounding of x: both threads get the reference result."""
    barrier = threading.Barrier(2, timeout=60)

    def worker(seed):
        rng = np.random.default_rng(seed)
        x, w = rand(rng, (256, 1024)), rand(rng, (512, 1024), 1 / 32)
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            lin, xd = device_linear(w), cupy.asarray(x)
            barrier.wait()
            for _ in range(20):
                y = lin(xd, activation="gelu")
            got = y.get()
            stream.synchronize()
        return got, reference.bf16_linear(x, w, None, reference.ACT_GELU)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for got, want in pool.map(worker, [35, 36]):
            np.testing.assert_allclose(got, want, **tol(1024))
