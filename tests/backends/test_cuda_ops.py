"""The CUDA ops against `aiotranslate.ops.reference`, computed on host copies of the same inputs.

Skipped without cupy or a CUDA device (the CPU CI has neither). Tolerances per dtype: float32
rtol 1e-5, float64 1e-10, float16 1e-2; GEMMs get an absolute term growing as sqrt(K) on O(1)
outputs, tight enough that TF32 (10-bit mantissa) fails them.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading

import numpy as np
import pytest

from gpu_support import HAVE_GPU, cupy, requires_gpu

from aiotranslate import ops
from aiotranslate.ops import reference

pytestmark = requires_gpu

if HAVE_GPU:
    from aiotranslate.backends import get_array_module, is_cuda_array

DTYPES = [np.float32, np.float64, np.float16]
TOL = {
    np.float32: {"rtol": 1e-5, "atol": 1e-6},
    np.float64: {"rtol": 1e-10, "atol": 1e-12},
    np.float16: {"rtol": 1e-2, "atol": 1e-3},
}
ACTIVATIONS = [None, "relu", "gelu", "gelu_tanh", "silu"]


def rand(rng, shape, dtype=np.float32, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def check(got, want, dtype, **override):
    assert is_cuda_array(got)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(cupy.asnumpy(got), want, **{**TOL[dtype], **override})


# ---------------------------------------------------------------- softmax


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (4, 1000), (2, 50257), (2, 3, 33)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_reference(dtype, shape, log):
    rng = np.random.default_rng(0)
    x = rand(rng, shape, dtype, scale=3.0)
    got = ops.softmax(cupy.asarray(x), scale=0.7, log=log)
    want = reference.softmax(x.reshape(-1, shape[-1]), 0.7, log=log).reshape(shape)
    check(got, want, dtype, **({"atol": 1e-8} if dtype == np.float32 and not log else {}))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_masks_lengths_and_causal(dtype, log):
    """-inf in the mask, a fully masked row, zero and oversized lengths, causal blocks: one call."""
    rng = np.random.default_rng(1)
    r, n, q = 24, 37, 4  # 6 groups of causal_q = 4 query rows
    x = rand(rng, (r, n), dtype, scale=2.0)
    mask = np.where(rng.random((8, n)) < 0.2, -np.inf, rng.standard_normal((8, n))).astype(dtype)
    mask[3] = -np.inf  # every 8th row from row 3 on sees nothing
    lengths = np.array([n, 0, 5, n + 9, 30, 1], dtype=np.int32)
    got = ops.softmax(
        cupy.asarray(x), scale=0.5, mask=cupy.asarray(mask), lengths=lengths, causal_q=q, log=log
    )
    want = reference.softmax(x, 0.5, mask, lengths, q, log)
    assert not np.isnan(cupy.asnumpy(got)).any()
    check(got, want, dtype)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_nan_in_nan_out(log):
    """NaN (either sign) or +inf among a row's visible logits: its visible outputs are NaN, as on the
    CPU; masked columns keep 0 (log: -inf) and a masked-off NaN changes nothing."""
    x = rand(np.random.default_rng(9), (5, 37))
    x[0, 3], x[1, 36], x[2, 0], x[3, 30] = np.nan, -np.nan, np.inf, np.nan
    lengths = np.array([20, 37, 37, 25, 37], np.int32)
    got = cupy.asnumpy(ops.softmax(cupy.asarray(x), lengths=lengths, log=log))
    want = reference.softmax(x, 1.0, None, lengths, 0, log)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[:3, :20]).all() and not np.isnan(got[3:]).any()
    np.testing.assert_allclose(got[3:], want[3:], **TOL[np.float32])


@pytest.mark.parametrize("causal_q", [1, 3])
def test_softmax_causal_decoding_and_device_lengths(causal_q):
    rng = np.random.default_rng(2)
    x = rand(rng, (6, 50), scale=2.0)
    lengths = cupy.asarray(np.array([50, 20], dtype=np.int64))  # any integer dtype, on the device
    got = ops.softmax(cupy.asarray(x), lengths=lengths, causal_q=causal_q)
    check(got, reference.softmax(x, 1.0, None, np.array([50, 20]), causal_q), np.float32, atol=1e-8)


def test_softmax_in_place_and_log_softmax_alias():
    rng = np.random.default_rng(3)
    x = rand(rng, (5, 300))
    xd = cupy.asarray(x)
    assert ops.softmax(xd, out=xd) is xd
    check(xd, reference.softmax(x), np.float32, atol=1e-8)
    check(ops.log_softmax(cupy.asarray(x), scale=2.0), reference.softmax(x, 2.0, log=True), np.float32)


def test_softmax_rejects_bad_arguments():
    x = cupy.zeros((4, 6), dtype=cupy.float32)
    with pytest.raises(TypeError, match="mask"):
        ops.softmax(x, mask=np.zeros((4, 6), dtype=np.float32))  # a host mask for a device input
    with pytest.raises(TypeError):
        ops.softmax(x, mask=cupy.zeros((4, 6), dtype=cupy.float64))
    with pytest.raises(ValueError):
        ops.softmax(x, mask=cupy.zeros((3, 6), dtype=cupy.float32))
    with pytest.raises(ValueError):
        ops.softmax(x, lengths=[1, 2, 3])
    with pytest.raises(ValueError):
        ops.softmax(x, causal_q=3)
    with pytest.raises(ValueError):
        ops.softmax(x, out=cupy.zeros((4, 5), dtype=cupy.float32))


# ---------------------------------------------------------------- norms


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (8, 4096), (2, 3, 768)])
@pytest.mark.parametrize("with_beta", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
def test_layer_norm_matches_reference(dtype, shape, with_beta, with_residual):
    rng = np.random.default_rng(4)
    c = shape[-1]
    x, gamma, beta = rand(rng, shape, dtype, 2.0), rand(rng, (c,), dtype), rand(rng, (c,), dtype)
    res = rand(rng, shape, dtype) + dtype(3.0)  # an offset mean: tests the variance formula
    res_d = cupy.asarray(res) if with_residual else None
    got = ops.layer_norm(
        cupy.asarray(x), cupy.asarray(gamma), cupy.asarray(beta) if with_beta else None,
        eps=1e-5, residual=res_d,
    )
    want, s = reference.layer_norm(
        x.reshape(-1, c), gamma, beta if with_beta else None, 1e-5,
        res.reshape(-1, c) if with_residual else None,
    )
    check(got, want.reshape(shape), dtype)
    if with_residual:
        check(res_d, s.reshape(shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 33), (8, 4096), (2, 3, 768)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_matches_reference(dtype, shape, with_residual):
    rng = np.random.default_rng(5)
    c = shape[-1]
    x, gamma, res = rand(rng, shape, dtype, 2.0), rand(rng, (c,), dtype), rand(rng, shape, dtype)
    res_d = cupy.asarray(res) if with_residual else None
    got = ops.rms_norm(cupy.asarray(x), cupy.asarray(gamma), eps=1e-6, residual=res_d)
    want, s = reference.rms_norm(
        x.reshape(-1, c), gamma, 1e-6, res.reshape(-1, c) if with_residual else None
    )
    check(got, want.reshape(shape), dtype)
    if with_residual:
        check(res_d, s.reshape(shape), dtype)


def test_norm_in_place_and_checks():
    rng = np.random.default_rng(6)
    x, gamma = rand(rng, (4, 64)), rand(rng, (64,))
    xd = cupy.asarray(x)
    ops.rms_norm(xd, cupy.asarray(gamma), out=xd)
    check(xd, reference.rms_norm(x, gamma)[0], np.float32)
    with pytest.raises(ValueError):
        ops.layer_norm(xd, cupy.zeros(63, dtype=cupy.float32))
    with pytest.raises(ValueError):  # a strided residual would be updated in a silent copy
        ops.layer_norm(xd, cupy.asarray(gamma), residual=cupy.zeros((64, 4), dtype=cupy.float32).T)


# ---------------------------------------------------------------- activations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [False, True])
def test_activation_matches_reference(dtype, name, with_bias):
    rng = np.random.default_rng(7)
    x, bias = rand(rng, (3, 5, 129), dtype, 3.0), rand(rng, (129,), dtype)
    got = ops.activation(cupy.asarray(x), name, bias=cupy.asarray(bias) if with_bias else None)
    z = x + bias if with_bias else x
    check(got, reference.activation(z.astype(dtype), reference.ACTIVATIONS[name]), dtype)


def test_activation_in_place_and_unknown_name():
    rng = np.random.default_rng(8)
    x = rand(rng, (7, 11))
    xd = cupy.asarray(x)
    ops.activation(xd, "silu", out=xd)
    check(xd, reference.activation(x, reference.ACT_SILU), np.float32)
    with pytest.raises(ValueError):
        ops.activation(xd, "tanhshrink")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 2), (3, 5, 22), (16, 2 * 1376)])
def test_swiglu_matches_reference(dtype, shape):
    rng = np.random.default_rng(9)
    x = rand(rng, shape, dtype, 2.0)
    got = ops.swiglu(cupy.asarray(x))
    want = reference.swiglu(x.reshape(-1, shape[-1])).reshape(shape[:-1] + (shape[-1] // 2,))
    check(got, want, dtype)
    with pytest.raises(ValueError):
        ops.swiglu(cupy.zeros((2, 3), dtype=cupy.float32))


# ---------------------------------------------------------------- GEMMs


def gemm_tol(dtype, k):
    return {
        np.float32: {"rtol": 1e-5, "atol": 1e-6 * math.sqrt(k)},
        np.float64: {"rtol": 1e-10, "atol": 1e-12 * math.sqrt(k)},
        np.float16: {"rtol": 1e-2, "atol": 1e-2},
    }[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mkn", [(1, 1, 1), (3, 17, 5), (32, 512, 2048), (2, 1024, 96)])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_linear_matches_reference(dtype, mkn, act):
    m, k, n = mkn
    rng = np.random.default_rng(10)
    x, w = rand(rng, (m, k), dtype), rand(rng, (n, k), dtype, 1 / math.sqrt(k))  # O(1) outputs
    bias, res = rand(rng, (n,), dtype), rand(rng, (m, n), dtype)
    for b, r in [(None, None), (bias, None), (bias, res), (None, res)]:
        got = ops.linear(
            cupy.asarray(x), cupy.asarray(w), None if b is None else cupy.asarray(b),
            activation=act, residual=None if r is None else cupy.asarray(r),
        )
        want = reference.linear(x, w, b, reference.ACTIVATIONS[act], r)
        check(got, want, dtype, **gemm_tol(dtype, k))


def test_linear_batched_input_float16_and_out():
    rng = np.random.default_rng(11)
    x, w = rand(rng, (2, 3, 64), np.float16), rand(rng, (40, 64), np.float16, 0.125)
    bias = rand(rng, (40,), np.float16)
    out = cupy.empty((2, 3, 40), dtype=cupy.float16)
    got = ops.linear(
        cupy.asarray(x), cupy.asarray(w), cupy.asarray(bias), activation="gelu", out=out
    )
    assert got is out
    want = reference.linear(x.reshape(6, 64), w, bias, reference.ACT_GELU).reshape(2, 3, 40)
    check(got, want, np.float16, **gemm_tol(np.float16, 64))


def test_linear_adds_into_the_residual_stream_in_place():
    rng = np.random.default_rng(18)
    x, w, res = rand(rng, (6, 32)), rand(rng, (16, 32), scale=32**-0.5), rand(rng, (6, 16))
    res_d = cupy.asarray(res)
    assert ops.linear(cupy.asarray(x), cupy.asarray(w), residual=res_d, out=res_d) is res_d
    check(res_d, reference.linear(x, w, None, reference.ACT_NONE, res), np.float32, **gemm_tol(np.float32, 32))


def test_linear_is_full_float32_not_tf32():
    """1 + 2^-11 survives in float32 but rounds to 1 in TF32's 10-bit mantissa."""
    k = 1024
    x = cupy.full((4, k), 1 + 2.0**-11, dtype=cupy.float32)
    w = cupy.ones((8, k), dtype=cupy.float32)
    np.testing.assert_array_equal(cupy.asnumpy(ops.linear(x, w)), np.full((4, 8), k * (1 + 2.0**-11)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("gmkn", [(1, 1, 8, 1), (64, 128, 64, 128), (6, 1, 64, 77)])
@pytest.mark.parametrize("trans_b", [False, True])
def test_batched_matmul_matches_reference(dtype, gmkn, trans_b):
    g, m, k, n = gmkn
    rng = np.random.default_rng(12)
    a = rand(rng, (g, m, k), dtype, 1 / math.sqrt(k))
    b = rand(rng, (g, n, k) if trans_b else (g, k, n), dtype)
    got = ops.batched_matmul(cupy.asarray(a), cupy.asarray(b), trans_b=trans_b, alpha=0.125)
    check(got, reference.batched_matmul(a, b, trans_b, 0.125), dtype, **gemm_tol(dtype, k))


@pytest.mark.parametrize("trans_b", [False, True])
def test_batched_matmul_takes_strided_kv_cache_views(trans_b):
    """K and V live in (G, T_max, D) caches; the op reads the (G, T, D) prefix as a view."""
    rng = np.random.default_rng(13)
    g, t_max, t, d = 8, 96, 41, 64
    cache = rand(rng, (g, t_max, d))
    q = rand(rng, (g, 2, d), scale=0.125)  # (G, M, D)
    p = rand(rng, (g, 2, t))  # (G, M, T)
    cache_d = cupy.asarray(cache)
    if trans_b:  # scores = Q @ K^T
        got = ops.batched_matmul(cupy.asarray(q), cache_d[:, :t], trans_b=True)
        want = reference.batched_matmul(q, cache[:, :t], True)
    else:  # context = P @ V
        got = ops.batched_matmul(cupy.asarray(p), cache_d[:, :t])
        want = reference.batched_matmul(p, cache[:, :t])
    check(got, want, np.float32, **gemm_tol(np.float32, t_max))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal_q", [0, 3])
def test_attention_on_kv_cache_views_matches_reference(dtype, causal_q):
    """On the GPU the op is its three ops (batched_matmul, softmax, batched_matmul) on the device."""
    rng = np.random.default_rng(14)
    g, m, t_max, t, d = 8, 6, 96, 41, 64
    q = rand(rng, (g, m, d), dtype)
    k, v = rand(rng, (g, t_max, d), dtype), rand(rng, (g, t_max, d), dtype)
    lengths = np.array([41, 30, 3, 0], np.int32)
    got = ops.attention(cupy.asarray(q), cupy.asarray(k)[:, :t], cupy.asarray(v)[:, :t], scale=0.125,
                        lengths=lengths, causal_q=causal_q)  # fmt: skip
    want = reference.attention(q, k[:, :t], v[:, :t], 0.125, lengths, causal_q)
    check(got, want, dtype, **gemm_tol(dtype, t))


def test_gemm_shape_checks():
    with pytest.raises(ValueError):
        ops.linear(cupy.zeros((2, 5), dtype=cupy.float32), cupy.zeros((3, 4), dtype=cupy.float32))
    with pytest.raises(TypeError):
        ops.linear(cupy.zeros((2, 4), dtype=cupy.float32), cupy.zeros((3, 4), dtype=cupy.float64))
    with pytest.raises(ValueError):
        ops.batched_matmul(
            cupy.zeros((2, 3, 4), dtype=cupy.float32), cupy.zeros((2, 5, 6), dtype=cupy.float32)
        )


# ---------------------------------------------------------------- positions and embeddings


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("r2", [32, 8])  # full rotary dim of D = 64, then partial (16 of 64)
def test_rotary_in_place_matches_reference(dtype, interleaved, r2):
    rng = np.random.default_rng(14)
    n, h, d, p = 9, 4, 64, 100
    inv_freq = 1.0 / (10000.0 ** (np.arange(r2, dtype=np.float32) / r2))
    cos, sin = reference.rotary_tables(inv_freq, p)
    x = rand(rng, (n, h, d), dtype)
    positions = rng.integers(0, p, size=n)
    xd = cupy.asarray(x)
    got = ops.rotary(xd, positions, cupy.asarray(cos), cupy.asarray(sin), interleaved=interleaved)
    assert got is xd
    check(xd, reference.rotary(x, positions, cos, sin, interleaved), dtype)


def test_rotary_checks():
    host_cos, host_sin = ops.rotary_tables(np.ones(8, dtype=np.float32), 10)
    cos, sin = cupy.asarray(host_cos), cupy.asarray(host_sin)
    x = cupy.zeros((3, 2, 16), dtype=cupy.float32)
    with pytest.raises(TypeError, match="cos"):
        ops.rotary(x, [0, 1, 2], host_cos, host_sin)
    with pytest.raises(ValueError):
        ops.rotary(x, [0, 1, 10], cos, sin)  # position past the tables
    with pytest.raises(ValueError):
        ops.rotary(x, [0, -1, 2], cos, sin)
    with pytest.raises(ValueError):
        strided = cupy.zeros((3, 16, 2), dtype=cupy.float32).transpose(0, 2, 1)
        ops.rotary(strided, [0, 1, 2], cos, sin)
    with pytest.raises(ValueError):
        ops.rotary(cupy.zeros((3, 2, 12), dtype=cupy.float32), [0, 1, 2], cos, sin)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("on_device", [False, True])
def test_embedding_matches_reference(dtype, on_device):
    rng = np.random.default_rng(15)
    table = rand(rng, (1000, 96), dtype)
    ids = rng.integers(0, 1000, size=(3, 7))
    ids_arg = cupy.asarray(ids) if on_device else ids
    got = ops.embedding(ids_arg, cupy.asarray(table), scale=math.sqrt(96))
    want = reference.embedding(ids.reshape(-1), table, math.sqrt(96)).reshape(3, 7, 96)
    check(got, want, dtype)


def test_embedding_rejects_ids_out_of_range():
    table = cupy.zeros((10, 4), dtype=cupy.float32)
    with pytest.raises(ValueError, match="token id 10"):
        ops.embedding(cupy.asarray([1, 10, 3]), table)
    with pytest.raises(ValueError, match="token id -1"):
        ops.embedding([-1], table)
    with pytest.raises(TypeError):
        ops.embedding(np.array([0.5]), table)


# ---------------------------------------------------------------- selection


def rows_with_ties_and_nans(rng, r, n, dtype):
    x = rand(rng, (r, n), dtype)
    x[0, [3 % n, n - 1]] = x[0].max() + 1  # a tie for the maximum: lowest index wins
    if r > 2:
        x[1, :] = np.nan
        x[2, :] = -np.inf
        x[2, n // 2] = np.nan
    if r > 3:
        x[3, ::2] = np.nan  # NaN never wins
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (5, 50257), (2, 3, 1000)])
def test_argmax_matches_reference(dtype, shape):
    rng = np.random.default_rng(16)
    r, n = math.prod(shape[:-1]), shape[-1]
    x = rows_with_ties_and_nans(rng, r, n, dtype)
    got = ops.argmax(cupy.asarray(x.reshape(shape)))
    assert got.dtype == np.int32 and got.shape == shape[:-1]
    np.testing.assert_array_equal(cupy.asnumpy(got).reshape(-1), reference.argmax(x))


def test_argmax_rejects_empty_rows():
    with pytest.raises(ValueError):
        ops.argmax(cupy.zeros((2, 0), dtype=cupy.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "k"), [((1, 1), 1), ((4, 7), 0), ((4, 7), 7), ((5, 50257), 50), ((2, 3, 100), 4)]
)
def test_topk_matches_reference(dtype, shape, k):
    rng = np.random.default_rng(17)
    r, n = math.prod(shape[:-1]), shape[-1]
    x = rows_with_ties_and_nans(rng, r, n, dtype)
    x[0, : min(n, 6)] = 0.25  # a run of equal values crossing the cut
    values, indices = ops.topk(cupy.asarray(x.reshape(shape)), k)
    want_values, want_indices = reference.topk(x, k)
    out_shape = shape[:-1] + (k,)
    assert values.shape == indices.shape == out_shape and indices.dtype == np.int32
    np.testing.assert_array_equal(cupy.asnumpy(indices).reshape(r, k), want_indices)
    np.testing.assert_array_equal(cupy.asnumpy(values).reshape(r, k), want_values)


def test_topk_rejects_bad_k():
    with pytest.raises(ValueError):
        ops.topk(cupy.zeros((2, 5), dtype=cupy.float32), 6)


# ---------------------------------------------------------------- backend plumbing and streams


def test_array_module_of_cupy_arrays():
    assert is_cuda_array(cupy.zeros(1))
    assert get_array_module(cupy.zeros(1)) is cupy
    assert not is_cuda_array(np.zeros(1))


def test_two_threads_with_their_own_streams_compute_correctly():
    """Two workers, each queueing a linear -> rms_norm -> softmax chain on its own non-blocking
    stream at the same time, both get the reference result."""
    barrier = threading.Barrier(2, timeout=60)

    def worker(seed):
        rng = np.random.default_rng(seed)
        x, w, gamma = rand(rng, (256, 1024)), rand(rng, (512, 1024), scale=1 / 32), rand(rng, (512,))
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            xd, wd, gd = cupy.asarray(x), cupy.asarray(w), cupy.asarray(gamma)
            barrier.wait()
            for _ in range(20):
                y = ops.linear(xd, wd, activation="gelu")
                y = ops.rms_norm(y, gd)
                p = ops.softmax(y, scale=0.5)
            got = p.get()
            stream.synchronize()
        y = reference.linear(x, w, None, reference.ACT_GELU)
        return got, reference.softmax(reference.rms_norm(y, gamma)[0], 0.5)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for got, want in pool.map(worker, [20, 21]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
