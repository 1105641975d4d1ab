"""attention: the fused kernel against ops.reference and against the three ops it replaces."""

import importlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiotranslate import ops
from aiotranslate.ops import reference

attention_module = importlib.import_module("aiotranslate.ops.attention")  # the module, not the op

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


def assert_matches(actual, expected, v):
    """Within RTOL, plus an absolute term on the scale of v (a context is a mean of value rows, and
    terms of opposite signs cancel)."""
    dtype = actual.dtype.type
    atol = RTOL[dtype] * max(1.0, float(np.abs(v).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=atol)


def cache_view(rng, g, n, d, dtype, spare=3):
    """A (G, N, D) slice of a larger (G, N + spare, D) buffer: strided like a KV-cache slice."""
    return rng.standard_normal((g, n + spare, d)).astype(dtype)[:, :n]


def unfused(q, k, v, scale, lengths=None, causal_q=0):
    """The ops the fused kernel replaces, as layers.attention ran them."""
    scores = ops.batched_matmul(q, k, trans_b=True)
    probs = ops.softmax(scores, scale=scale, lengths=lengths, causal_q=causal_q)
    return ops.batched_matmul(probs, v)


@st.composite
def attention_cases(draw):
    """G = B x H groups of M = r x T queries, so that lengths (per batch row, per group or per query)
    and causal_q = T tile the rows as they do in layers.attention."""
    b, h, r, t = (draw(st.integers(lo, hi)) for lo, hi in ((0, 3), (1, 3), (1, 2), (0, 4)))
    g, m = b * h, r * t
    n = draw(st.integers(t, 40))
    d = draw(st.sampled_from([1, 3, 16, 17, 64, 80]))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q = rng.standard_normal((g, m, d)).astype(dtype)
    k, v = cache_view(rng, g, n, d, dtype), cache_view(rng, g, n, d, dtype)
    kwargs = {"scale": draw(st.sampled_from([1.0, d**-0.5, 3.0]))}
    if draw(st.booleans()) and g * m:
        per = draw(st.sampled_from([b, g, g * m]))
        kwargs["lengths"] = rng.integers(0, n + 2, size=per).astype(np.int32)
    if draw(st.booleans()) and t:
        kwargs["causal_q"] = t
    return q, k, v, kwargs


@given(attention_cases())
def test_matches_reference(case):
    q, k, v, kwargs = case
    expected = reference.attention(q, k, v, **kwargs)
    assert_matches(ops.attention(q, k, v, **kwargs), expected, v)


@pytest.mark.parametrize(("g", "m", "n", "d"), [(0, 1, 4, 8), (2, 0, 4, 8), (2, 3, 0, 8), (2, 3, 4, 0), (1, 1, 1, 1),
                                                (3, 5, 33, 17), (256, 1, 16, 64), (4, 16, 130, 128),
                                                (2, 70, 70, 64), (1, 2, 2049, 80)])  # fmt: skip
@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_and_model_shapes(g, m, n, d, dtype):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((g, m, d)).astype(dtype)
    k, v = cache_view(rng, g, n, d, dtype), cache_view(rng, g, n, d, dtype)
    assert_matches(ops.attention(q, k, v, scale=0.125), reference.attention(q, k, v, 0.125), v)


@pytest.mark.parametrize(("g", "t", "n"), [(12, 5, 9), (4, 130, 140)])  # t > 64: blocks of query rows
@pytest.mark.parametrize("causal", [False, True])
def test_float32_equals_the_unfused_ops_bit_for_bit(g, t, n, causal):
    """Same kernels, same order of operations: models decode exactly what they decoded before."""
    rng = np.random.default_rng(1)
    q = rng.standard_normal((g, t, 64)).astype(np.float32)
    k, v = cache_view(rng, g, n, 64, np.float32), cache_view(rng, g, n, 64, np.float32)
    lengths = rng.integers(t, n + 1, 4).astype(np.int32)
    causal_q = t if causal else 0
    fused = ops.attention(q, k, v, scale=0.125, lengths=lengths, causal_q=causal_q)
    assert fused.tobytes() == unfused(q, k, v, 0.125, lengths, causal_q).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_additive_mask_and_probabilities_out(dtype):
    """With an additive mask or probs_out the op runs the three ops, and probs_out holds exactly the
    probabilities whose product with v is the result."""
    rng = np.random.default_rng(5)
    g, m, n, d = 3, 4, 6, 8
    q, k, v = (rng.standard_normal(shape).astype(dtype) for shape in ((g, m, d), (g, n, d), (g, n, d)))
    mask = np.where(rng.random((m, n)) < 0.3, -np.inf, 0.0).astype(dtype)
    mask[:, 0] = 0.0  # every query sees key 0
    probs = np.zeros((g, m, n), dtype)
    got = ops.attention(q, k, v, scale=0.5, lengths=[5, 6, 4], mask=mask, probs_out=probs)
    scores = ops.batched_matmul(q, k, trans_b=True)
    expected_probs = ops.softmax(scores, scale=0.5, lengths=[5, 6, 4], mask=mask)
    np.testing.assert_array_equal(probs, expected_probs)
    np.testing.assert_array_equal(got, ops.batched_matmul(expected_probs, v))
    np.testing.assert_array_equal(probs[np.broadcast_to(mask == -np.inf, probs.shape)], 0)


def test_queries_that_see_no_key_get_zeros():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((4, 2, 16)).astype(np.float32)
    k, v = cache_view(rng, 4, 6, 16, np.float32), cache_view(rng, 4, 6, 16, np.float32)
    out = ops.attention(q, k, v, scale=1.0, lengths=[6, 0, -3, 2])
    assert (out[1:3] == 0).all() and (out[[0, 3]] != 0).all()
    assert_matches(out, reference.attention(q, k, v, 1.0, np.array([6, 0, -3, 2])), v)


def test_keys_past_the_lengths_are_never_read():
    """Junk (NaN, inf) in the unused tail of a cache cannot reach the context."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, 3, 8)).astype(np.float32)
    k, v = cache_view(rng, 2, 7, 8, np.float32), cache_view(rng, 2, 7, 8, np.float32)
    expected = reference.attention(q, k, v, 0.5, np.array([4, 7]), 3)
    k[0, 4:], v[0, 4:] = np.nan, np.inf
    assert_matches(ops.attention(q, k, v, scale=0.5, lengths=[4, 7], causal_q=3), expected, v[1])


def test_nan_in_a_query_poisons_its_row_only():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((2, 2, 8)).astype(np.float32)
    k, v = rng.standard_normal((2, 5, 8)).astype(np.float32), rng.standard_normal((2, 5, 8)).astype(np.float32)
    q[1, 0, 3] = np.nan
    out = ops.attention(q, k, v, scale=1.0)
    assert np.isnan(out[1, 0]).all() and not np.isnan(np.delete(out.reshape(4, 8), 2, axis=0)).any()


def test_large_scores_are_stable():
    q = np.full((1, 1, 4), 100.0, np.float32)
    k = np.array([[[10.0] * 4, [9.0] * 4, [-10.0] * 4]], np.float32)
    v = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    assert_matches(ops.attention(q, k, v, scale=1.0), reference.attention(q, k, v, 1.0), v)


def test_read_only_strided_inputs_and_out():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((3, 8, 2, 16)).astype(np.float32)[:, :, 0]  # (G, M, D), strided rows
    k, v = cache_view(rng, 3, 10, 16, np.float32, spare=20), cache_view(rng, 3, 10, 16, np.float32)
    for x in (q, k, v):
        x.flags.writeable = False
    out = np.full((3, 8, 16), np.nan, np.float32)
    assert ops.attention(q, k, v, scale=0.25, causal_q=8, out=out) is out
    assert_matches(out, reference.attention(q, k, v, 0.25, causal_q=8), v)


@pytest.mark.parametrize("causal_q", [0, 8])
def test_thread_count_does_not_change_a_bit(causal_q):
    rng = np.random.default_rng(6)
    q = rng.standard_normal((64, 8, 64)).astype(np.float32)  # above the grain: really two threads
    k, v = cache_view(rng, 64, 100, 64, np.float32), cache_view(rng, 64, 100, 64, np.float32)
    kwargs = {"scale": 0.125, "lengths": rng.integers(0, 101, 8), "causal_q": causal_q}
    one = ops.attention(q, k, v, n_threads=1, **kwargs)
    assert one.tobytes() == ops.attention(q, k, v, n_threads=2, **kwargs).tobytes()


def test_every_instruction_set(isa):
    """The fused kernel runs the GEMM kernels of the instruction set in force (they share a module):
    on each, it equals the unfused ops bit for bit, matches the reference, and ignores n_threads."""
    rng = np.random.default_rng(8)
    for g, t, n, d in [(64, 1, 37, 64), (6, 5, 9, 17), (4, 70, 80, 64)]:  # decode, odd D, row blocks
        q = rng.standard_normal((g, t, d)).astype(np.float32)
        k, v = cache_view(rng, g, n, d, np.float32), cache_view(rng, g, n, d, np.float32)
        kwargs = {"scale": d**-0.5, "lengths": rng.integers(t, n + 1, 2).astype(np.int32), "causal_q": t}
        outs = [ops.attention(q, k, v, n_threads=threads, **kwargs) for threads in (1, 2)]
        assert outs[0].tobytes() == outs[1].tobytes()
        assert outs[0].tobytes() == unfused(q, k, v, **kwargs).tobytes()
        assert_matches(outs[0], reference.attention(q, k, v, **kwargs), v)


def test_without_the_extension_it_runs_the_ops(monkeypatch):
    monkeypatch.setattr(attention_module, "_kernels", None)
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for shape in ((4, 2, 8), (4, 6, 8), (4, 6, 8)))
    out = ops.attention(q, k, v, scale=0.5, lengths=[3, 6], causal_q=2)
    assert_matches(out, reference.attention(q, k, v, 0.5, np.array([3, 6]), 2), v)


Q, KV = np.zeros((4, 2, 8), np.float32), np.zeros((4, 6, 8), np.float32)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((Q, np.zeros((4, 6, 7), np.float32), KV), {}, ValueError),  # head dims differ
        ((Q, KV, KV[:, :5]), {}, ValueError),  # k and v differ
        ((Q, KV[:3], KV[:3]), {}, ValueError),  # groups differ
        ((Q[0], KV, KV), {}, ValueError),
        ((Q, KV.astype(np.float64), KV), {}, TypeError),
        ((Q.astype(np.int32), KV, KV), {}, TypeError),
        ((Q, KV, KV), {"lengths": [1, 2, 3]}, ValueError),
        ((Q, KV, KV), {"lengths": [1.0, 2.0]}, TypeError),
        ((Q, KV, KV), {"causal_q": 3}, ValueError),
        ((Q, KV, KV), {"causal_q": 8}, ValueError),  # more queries than keys
        ((Q, KV, KV), {"out": np.empty((4, 2, 6), np.float32)}, ValueError),
        ((Q, KV, KV), {"out": np.empty((4, 2, 8))}, TypeError),
        ((Q, KV, KV), {"n_threads": 0}, ValueError),
        ((Q.astype(np.float64), KV.astype(np.float64), KV.astype(np.float64)), {"n_threads": 0}, ValueError),
    ],
)
def test_bad_arguments_raise(args, kwargs, error):
    with pytest.raises(error):
        ops.attention(*args, scale=1.0, **kwargs)


def test_out_overlapping_an_input_raises():
    kv = np.zeros((2, 4, 8), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        ops.attention(np.zeros_like(kv), kv, kv, scale=1.0, out=kv)
