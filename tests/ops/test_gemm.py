"""linear and batched_matmul (native/_gemm.pyx) against the numpy reference.

Tolerances scale with the magnitude of the terms summed (|x| @ |w|^T + |bias| + |residual|) and with
sqrt(K) for the K-long dot products. Shapes cross every code path: our float32 kernels (M <= 256 or
K <= 128; dot-product tiles below M = 16 (the transposed copy for M >= 8 and K <= 128), outer-product
tiles from M = 16 and K > 128) and BLAS blocks (512 x 256), with sizes 0, 1, odd and past each block edge.
"""

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.ops import reference

native = load("_gemm")
needs_native = pytest.mark.skipif(native is None, reason="native kernels not built")

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ACTS = [None, "relu", "gelu", "gelu_tanh", "silu"]
SIZES = [0, 1, 2, 3, 5, 16, 17, 33, 64, 65, 130]


def arrays(rng, dtype, *shapes):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def assert_linear_close(out, x, w, bias=None, act=None, residual=None):
    rows = int(np.prod(x.shape[:-1]))
    x2, out2 = x.reshape(rows, x.shape[-1]), out.reshape(rows, w.shape[0])
    res2 = None if residual is None else residual.reshape(out2.shape)
    expected = reference.linear(x2, w, bias, ops.gemm.activation_code(act), res2)
    mag = np.abs(x2.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    mag += 1.0 + (0 if bias is None else np.abs(bias)) + (0 if res2 is None else np.abs(res2))
    tol = RTOL[out.dtype.type] * max(1.0, np.sqrt(w.shape[1])) * mag
    err = np.abs(out2.astype(np.float64) - expected)
    assert out.dtype == x.dtype
    assert np.all(err <= tol), f"max error / tolerance {np.max(err / tol)}"


def assert_bmm_close(out, a, b, trans_b, alpha):
    bb = np.swapaxes(b, -1, -2) if trans_b else b
    mag = abs(alpha) * (np.abs(a.astype(np.float64)) @ np.abs(bb.astype(np.float64))) + 1.0
    tol = RTOL[out.dtype.type] * max(1.0, np.sqrt(a.shape[-1])) * mag
    err = np.abs(out - reference.batched_matmul(a, b, trans_b, alpha))
    assert np.all(err <= tol), f"max error / tolerance {np.max(err / tol)}"


@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    m=st.sampled_from(SIZES),
    k=st.sampled_from(SIZES),
    n=st.sampled_from(SIZES),
    act=st.sampled_from(ACTS),
    with_bias=st.booleans(),
    with_residual=st.booleans(),
    n_threads=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_linear_matches_reference(dtype, m, k, n, act, with_bias, with_residual, n_threads, seed):
    rng = np.random.default_rng(seed)
    x, w, bias, residual = arrays(rng, dtype, (m, k), (n, k), (n,), (m, n))
    bias = bias if with_bias else None
    residual = residual if with_residual else None
    out = ops.linear(x, w, bias, activation=act, residual=residual, n_threads=n_threads)
    assert out.shape == (m, n)
    assert_linear_close(out, x, w, bias, act, residual)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize(
    "m, k, n", [(1, 64, 48), (7, 33, 19), (8, 129, 70), (64, 40, 70), (65, 140, 70), (513, 129, 600)]
)
def test_linear_every_activation_and_block_edge(dtype, act, m, k, n):
    rng = np.random.default_rng(m * 1000 + n)
    x, w, bias, residual = arrays(rng, dtype, (m, k), (n, k), (n,), (m, n))
    out = ops.linear(x, w, bias, activation=act, residual=residual, n_threads=2)
    assert_linear_close(out, x, w, bias, act, residual)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "m, k, n", [(1, 512, 512), (3, 100, 67), (32, 64, 1000), (65, 64, 64), (600, 48, 520), (600, 160, 520)]
)
def test_linear_threads_give_identical_bits(dtype, m, k, n):
    rng = np.random.default_rng(3)
    x, w, bias, residual = arrays(rng, dtype, (m, k), (n, k), (n,), (m, n))
    outs = [ops.linear(x, w, bias, activation="gelu", residual=residual, n_threads=t) for t in (1, 2, 3)]
    assert outs[0].tobytes() == outs[1].tobytes() == outs[2].tobytes()


@pytest.mark.parametrize("m", [16, 17, 23, 31, 32, 33, 64, 130, 256])
@pytest.mark.parametrize("k, n", [(129, 64), (513, 65), (200, 79), (140, 81), (1100, 97), (512, 113), (300, 200)])
def test_linear_outer_product_tile_edges(m, k, n):
    """The outer-product path (16 <= M <= 256, K > 128): every row-tile split (tiles of 5 to 6 rows), every
    width of the last column panel (1 to 4 vectors, partial ones), products deeper than one packed
    panel (K > 512), all bitwise identical for any thread split."""
    rng = np.random.default_rng(m * 7 + k + n)
    x, w, bias, residual = arrays(rng, np.float32, (m, k), (n, k), (n,), (m, n))
    outs = [ops.linear(x, w, bias, activation="gelu", residual=residual, n_threads=t) for t in (1, 2, 3)]
    assert outs[0].tobytes() == outs[1].tobytes() == outs[2].tobytes()
    assert_linear_close(outs[0], x, w, bias, "gelu", residual)


def test_linear_strided_and_batched_inputs():
    rng = np.random.default_rng(4)
    big_x, big_w = arrays(rng, np.float32, (3, 10, 80), (90, 70))
    x = big_x[:, ::2, ::2]  # (3, 5, 40), non-contiguous
    w = big_w[::2, 10:50]  # (45, 40), non-contiguous
    bias = rng.standard_normal(90).astype(np.float32)[::2]
    residual = rng.standard_normal((3, 5, 90)).astype(np.float32)[..., ::2]
    out = ops.linear(x, w, bias, activation="silu", residual=residual)
    assert out.shape == (3, 5, 45)
    assert_linear_close(out, x, w, bias, "silu", residual)


def _placed(a, offset):
    """A copy of a whose data starts `offset` bytes past a cache line, amid NaN bytes."""
    raw = np.full(a.nbytes + 128, 0xFF, np.uint8)
    start = -raw.ctypes.data % 64 + offset
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("offset", range(4, 64, 4))
def test_one_row_gives_the_same_bits_wherever_the_weight_lies(isa, offset):
    """Rows of w that start past a cache line (numpy aligns to 16 bytes) run whole-line loads with
    rotated lanes in the AVX-512 build (nt_row_shifted): the same sums, bit for bit, as on aligned
    rows, and nothing of the NaN bytes around the operands gets in."""
    rng = np.random.default_rng(offset)
    for k, n in [(16, 9), (32, 8), (48, 1), (80, 37), (256, 130), (576, 64), (20, 9)]:
        x, w, bias = arrays(rng, np.float32, (1, k), (n, k), (n,))
        expected = ops.linear(_placed(x, 0), _placed(w, 0), bias, n_threads=1)
        assert_linear_close(expected, x, w, bias)
        for t in (1, 2):
            got = ops.linear(_placed(x, 3 * offset % 64), _placed(w, offset), bias, n_threads=t)
            assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("m", [2, 100])
def test_linear_read_only_inputs(m):
    rng = np.random.default_rng(5)
    x, w, bias, residual = arrays(rng, np.float32, (m, 24), (30, 24), (30,), (m, 30))
    for a in (x, w, bias, residual):
        a.setflags(write=False)
    out = ops.linear(x, w, bias, activation="relu", residual=residual)
    assert_linear_close(out, x, w, bias, "relu", residual)
    if native is not None:
        direct = np.empty_like(out)
        native.linear(x, w, bias, reference.ACT_RELU, residual, direct, 1)
        assert direct.tobytes() == out.tobytes()


@pytest.mark.parametrize("m", [3, 100])
def test_linear_residual_may_be_out(m):
    rng = np.random.default_rng(6)
    x, w, bias, residual = arrays(rng, np.float32, (m, 20), (36, 20), (36,), (m, 36))
    expected = ops.linear(x, w, bias, activation="gelu", residual=residual)
    ops.linear(x, w, bias, activation="gelu", residual=residual, out=residual)
    assert residual.tobytes() == expected.tobytes()


def test_linear_concurrent_python_threads():
    """Two threads with n_threads=1 each get their own, correct results (no shared BLAS state)."""
    rng = np.random.default_rng(7)
    jobs = [arrays(rng, np.float32, (m, 256), (384, 256)) for m in (1, 8, 200, 300)]
    expected = [ops.linear(x, w) for x, w in jobs]
    results = {}
    start = threading.Barrier(2)

    def worker(tid):
        start.wait()
        for rep in range(20):
            i = (rep + 2 * tid) % len(jobs)
            out = ops.linear(*jobs[i], n_threads=1)
            results.setdefault(i, []).append(out.tobytes() == expected[i].tobytes())

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(all(v) for v in results.values()) and len(results) == len(jobs)


def test_linear_bad_arguments():
    x, w = np.ones((4, 8), np.float32), np.ones((5, 8), np.float32)
    with pytest.raises(TypeError):
        ops.linear(x.astype(np.int32), w)
    with pytest.raises(TypeError):
        ops.linear(x, w.astype(np.float64))
    with pytest.raises(TypeError):
        ops.linear(x.tolist(), w)
    with pytest.raises(ValueError):
        ops.linear(x, np.ones((5, 7), np.float32))
    with pytest.raises(ValueError):
        ops.linear(x, w[None])
    with pytest.raises(ValueError):
        ops.linear(x, w, np.ones(4, np.float32))
    with pytest.raises(ValueError):
        ops.linear(x, w, residual=np.ones((4, 4), np.float32))
    with pytest.raises(ValueError):
        ops.linear(x, w, activation="tanh")
    with pytest.raises(ValueError):
        ops.linear(x, w, out=np.empty((4, 6), np.float32))
    with pytest.raises(TypeError):
        ops.linear(x, w, out=np.empty((4, 5), np.float64))
    with pytest.raises(ValueError):
        ops.linear(x, w, out=np.empty((5, 4), np.float32).T)


@needs_native
def test_native_linear_checks_its_arguments():
    x, w, out = np.ones((4, 8), np.float32), np.ones((5, 8), np.float32), np.empty((4, 5), np.float32)
    with pytest.raises(ValueError):
        native.linear(x, np.ones((5, 7), np.float32), None, 0, None, out, 1)
    with pytest.raises(ValueError):
        native.linear(x, w, None, 0, None, np.empty((4, 4), np.float32), 1)
    with pytest.raises(ValueError):
        native.linear(x, w, np.ones(3, np.float32), 0, None, out, 1)
    for act in (9, -1):  # -1: the enum comparison once let negative codes through
        with pytest.raises(ValueError, match="activation code"):
            native.linear(x, w, None, act, None, out, 1)
    with pytest.raises(ValueError):
        native.linear(x, w, None, 0, None, out, 0)
    with pytest.raises(ValueError, match="overlap"):
        buf = np.ones((8, 8), np.float32)
        native.linear(buf, np.ones((8, 8), np.float32), None, 0, None, buf, 1)
    with pytest.raises(ValueError, match="dtype mismatch"):  # Cython's buffer check
        native.linear(x, w.astype(np.float64), None, 0, None, out, 1)


@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    g=st.sampled_from([0, 1, 3]),
    m=st.sampled_from(SIZES),
    k=st.sampled_from([0, 1, 17, 64]),
    n=st.sampled_from(SIZES),
    trans_b=st.booleans(),
    alpha=st.sampled_from([1.0, 0.125, -2.0]),
    n_threads=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_batched_matmul_matches_reference(dtype, g, m, k, n, trans_b, alpha, n_threads, seed):
    rng = np.random.default_rng(seed)
    a, b = arrays(rng, dtype, (g, m, k), (g, n, k) if trans_b else (g, k, n))
    out = ops.batched_matmul(a, b, trans_b=trans_b, alpha=alpha, n_threads=n_threads)
    assert out.shape == (g, m, n)
    assert_bmm_close(out, a, b, trans_b, alpha)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("t", [1, 7, 64, 128])
@pytest.mark.parametrize("m", [1, 5, 128])
def test_attention_shapes_and_thread_determinism(dtype, t, m):
    """Q @ K^T then P @ V for G = batch x heads, head dim 64, M queries over T keys."""
    rng = np.random.default_rng(t * 1000 + m)
    q, kk, v = arrays(rng, dtype, (6, m, 64), (6, t, 64), (6, t, 64))
    scores = [ops.batched_matmul(q, kk, trans_b=True, alpha=0.125, n_threads=n) for n in (1, 2)]
    assert scores[0].tobytes() == scores[1].tobytes()
    assert_bmm_close(scores[0], q, kk, True, 0.125)
    p = np.abs(scores[0])
    context = [ops.batched_matmul(p, v, n_threads=n) for n in (1, 2)]
    assert context[0].tobytes() == context[1].tobytes()
    assert_bmm_close(context[0], p, v, False, 1.0)


def test_batched_matmul_strided_and_read_only_inputs():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((4, 6, 40)).astype(np.float32)[:, :, ::2]
    b = rng.standard_normal((4, 20, 9)).astype(np.float32)
    b.setflags(write=False)
    out = ops.batched_matmul(a, b)
    assert_bmm_close(out, a, b, False, 1.0)
    bt = np.swapaxes(rng.standard_normal((4, 20, 9)).astype(np.float32), 1, 2)  # (4, 9, 20) strided
    out = ops.batched_matmul(a, bt, trans_b=True, alpha=0.5)
    assert_bmm_close(out, a, bt, True, 0.5)


def test_batched_matmul_bad_arguments():
    a, b = np.ones((2, 3, 4), np.float32), np.ones((2, 4, 5), np.float32)
    with pytest.raises(TypeError):
        ops.batched_matmul(a, b.astype(np.float64))
    with pytest.raises(TypeError):
        ops.batched_matmul(a.astype(np.int64), b)
    with pytest.raises(ValueError):
        ops.batched_matmul(a[0], b[0])
    with pytest.raises(ValueError):
        ops.batched_matmul(a, np.ones((3, 4, 5), np.float32))
    with pytest.raises(ValueError):
        ops.batched_matmul(a, b, trans_b=True)
    with pytest.raises(ValueError):
        ops.batched_matmul(a, b, out=np.empty((2, 3, 4), np.float32))
    if native is not None:
        with pytest.raises(ValueError):
            native.batched_matmul(a, b, np.empty((2, 3, 4), np.float32), False, 1.0, 1)
        with pytest.raises(ValueError):
            native.batched_matmul(a, b, np.empty((2, 3, 5), np.float32), False, 1.0, -1)
        with pytest.raises(ValueError, match="overlap"):
            buf = np.ones((2, 4, 4), np.float32)
            native.batched_matmul(buf, buf.copy(), buf, False, 1.0, 1)


def test_every_instruction_set_of_the_float32_kernels(isa):
    """The kernels built for each vector width (the CPU's best runs everywhere else) are correct
    and partition-independent, on every tile and tail shape."""
    rng = np.random.default_rng(9)
    for m, k, n in [(1, 64, 37), (2, 100, 19), (3, 17, 70), (7, 129, 33), (9, 33, 70), (64, 200, 67),
                    (16, 140, 9), (23, 530, 45), (33, 200, 75), (70, 64, 30), (100, 200, 70)]:
        x, w, bias, residual = arrays(rng, np.float32, (m, k), (n, k), (n,), (m, n))
        outs = [ops.linear(x, w, bias, activation="silu", residual=residual, n_threads=t) for t in (1, 2)]
        assert outs[0].tobytes() == outs[1].tobytes()
        assert_linear_close(outs[0], x, w, bias, "silu", residual)
    for m, t, d in [(1, 37, 64), (2, 128, 64), (5, 9, 70), (16, 100, 64), (128, 64, 24), (21, 13, 64)]:
        q, kk, p = arrays(rng, np.float32, (3, m, d), (3, t, d), (3, m, t))
        for a, b, trans_b in [(q, kk, True), (p, kk, False)]:
            outs = [ops.batched_matmul(a, b, trans_b=trans_b, alpha=0.5, n_threads=n) for n in (1, 2)]
            assert outs[0].tobytes() == outs[1].tobytes()
            assert_bmm_close(outs[0], a, b, trans_b, 0.5)


@needs_native
def test_scipy_blas_held_to_one_thread():
    """The BLAS our kernels call runs single-threaded inside our partitions; numpy's keeps its threads."""
    import os

    import scipy
    from threadpoolctl import threadpool_info

    root = os.path.dirname(os.path.realpath(scipy.__file__))
    libs = [i for i in threadpool_info() if i["user_api"] == "blas"]
    scipy_libs = [i for i in libs if os.path.realpath(i["filepath"]).startswith(root)]
    if not scipy_libs:
        pytest.skip("scipy shares its BLAS with numpy here")
    assert all(i["num_threads"] == 1 for i in scipy_libs)


@pytest.mark.parametrize("trans_b", [True, False])
def test_batched_matmul_reads_kv_cache_slices_in_place(trans_b):
    """Attention passes (G, T, D) slices of a (G, T_max, D) cache: outer strides, no copy."""
    rng = np.random.default_rng(3)
    cache = rng.standard_normal((6, 20, 8)).astype(np.float32)
    t = 7
    keys = cache[:, :t]  # (G, T, D), not contiguous
    q = rng.standard_normal((6, 3, 8)).astype(np.float32)
    probs = rng.standard_normal((6, 3, t)).astype(np.float32)
    if trans_b:
        got = ops.batched_matmul(q, keys, trans_b=True, alpha=0.5, n_threads=2)
        want = reference.batched_matmul(q, np.ascontiguousarray(keys), True, 0.5)
    else:
        got = ops.batched_matmul(probs, keys, n_threads=2)
        want = reference.batched_matmul(probs, np.ascontiguousarray(keys))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
