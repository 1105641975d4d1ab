"""Rotary embeddings, the sinusoidal table and the embedding gather: native kernels vs reference."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiotranslate import _native, ops
from aiotranslate.ops import reference

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]

pytestmark = pytest.mark.skipif(_native.load("_positions") is None, reason="native kernels not built")


def tables(r2, n_positions, base=10000.0):
    inv_freq = 1.0 / base ** (np.arange(r2, dtype=np.float64) / max(r2, 1))
    return reference.rotary_tables(inv_freq, n_positions)


def rotated(x, positions, cos, sin, interleaved, n_threads=1):
    y = x.copy()
    assert ops.rotary(y, positions, cos, sin, interleaved=interleaved, n_threads=n_threads) is y
    return y


# --- rotary ---------------------------------------------------------------------------------------


@given(
    dtype=st.sampled_from(DTYPES),
    n=st.integers(0, 5),
    h=st.integers(1, 3),
    r2=st.integers(0, 9),
    extra=st.integers(0, 3),  # features past the rotary dim pass through
    n_positions=st.integers(1, 300),
    interleaved=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_rotary_matches_reference(dtype, n, h, r2, extra, n_positions, interleaved, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, 2 * r2 + extra)).astype(dtype)
    positions = rng.integers(0, n_positions, n)
    cos, sin = tables(r2, n_positions)
    expected = reference.rotary(x, positions, cos, sin, interleaved)
    y = rotated(x, positions, cos, sin, interleaved)
    np.testing.assert_allclose(y, expected, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_array_equal(y[..., 2 * r2 :], x[..., 2 * r2 :])


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_float32_is_exact(interleaved):
    """Double math with one rounding: the same bits as the float64 reference cast to float32."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 3, 20)).astype(np.float32)
    positions = rng.integers(0, 4096, 7)
    cos, sin = tables(8, 4096)
    expected = reference.rotary(x, positions, cos, sin, interleaved)
    np.testing.assert_array_equal(rotated(x, positions, cos, sin, interleaved), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_threads_give_identical_results(dtype, interleaved):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 8, 96)).astype(dtype)  # above the grain: the team really splits
    positions = 1000 + rng.integers(0, 1000, 64)
    cos, sin = tables(32, 2048)
    one = rotated(x, positions, cos, sin, interleaved, n_threads=1)
    two = rotated(x, positions, cos, sin, interleaved, n_threads=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, reference.rotary(x, positions, cos, sin, interleaved), rtol=RTOL[dtype])


def test_rotary_takes_strided_and_read_only_tables():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 2, 10)).astype(np.float32)
    cos, sin = tables(8, 40)
    cos_s, sin_s = cos[:, :4], sin[:, :4]  # strided views: a partial rotary dim of 8
    positions = np.arange(0, 36, 3)[::2]
    for a in (cos, sin, positions):
        a.flags.writeable = False
    expected = reference.rotary(x, positions, cos_s, sin_s, False)
    np.testing.assert_array_equal(rotated(x, positions, cos_s, sin_s, False), expected)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("r2", [16, 8])  # full and partial rotary dim of a 32-feature head
def test_rotary_matches_transformers(interleaved, r2):
    """Half-split is transformers' Llama rotate_half convention (partial: GPT-NeoX/Phi slice the
    rotary part first); interleaved is GPT-J's rotate_every_two."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import LlamaConfig
    from transformers.models.gptj import modeling_gptj
    from transformers.models.llama import modeling_llama

    t, h, d = 5, 3, 32
    rng = np.random.default_rng(4)
    x = rng.standard_normal((t, h, d)).astype(np.float32)
    positions = np.array([17, 3, 250, 0, 99])
    config = LlamaConfig(hidden_size=h * 2 * r2, num_attention_heads=h, max_position_embeddings=512)
    rope = modeling_llama.LlamaRotaryEmbedding(config)
    cos, sin = reference.rotary_tables(rope.inv_freq.numpy(), 512)
    q = torch.from_numpy(x[..., : 2 * r2].copy())  # (T, H, rotary part)
    if interleaved:
        # GPT-J: sin, cos (B, T, R2) for (B, T, H, D) queries.
        c, s = (torch.from_numpy(a[positions])[None] for a in (cos, sin))
        hf_rot = modeling_gptj.apply_rotary_pos_emb(q[None], s, c)[0]
    else:
        hf_cos, hf_sin = rope(q[None], torch.from_numpy(positions)[None])  # (1, T, 2 R2)
        np.testing.assert_allclose(hf_cos[0, :, :r2].numpy(), cos[positions], atol=1e-6)
        qh = q.permute(1, 0, 2)[None]  # (B, H, T, D)
        hf_rot = modeling_llama.apply_rotary_pos_emb(qh, qh, hf_cos, hf_sin)[0][0].permute(1, 0, 2)
    expected = np.concatenate([hf_rot.numpy(), x[..., 2 * r2 :]], axis=-1)
    np.testing.assert_allclose(rotated(x, positions, cos, sin, interleaved), expected, rtol=1e-5, atol=1e-5)


def test_rotary_rejects_bad_inputs():
    x = np.zeros((3, 2, 8), np.float32)
    cos, sin = tables(4, 10)
    ok = np.array([0, 1, 9])
    cases = [
        (ValueError, dict(x=np.zeros((3, 2, 6), np.float32))),  # 2 * R2 > D
        (ValueError, dict(x=np.zeros((3, 2, 16), np.float32)[:, :, ::2])),  # in place: not strided
        (ValueError, dict(x=np.zeros((3, 16), np.float32))),
        (ValueError, dict(x=x.tolist())),
        (TypeError, dict(x=np.zeros((3, 2, 8), np.int32))),
        (TypeError, dict(cos=cos.astype(np.float64))),
        (ValueError, dict(sin=sin[:5])),
        (ValueError, dict(positions=np.array([0, 1]))),
        (ValueError, dict(positions=np.array([0, 1, 10]))),
        (ValueError, dict(positions=np.array([0, -1, 2]))),
        (ValueError, dict(positions=np.array([0, 1, 2**32 + 1]))),  # would wrap to 1 as int32
        (TypeError, dict(positions=np.array([0.0, 1.0, 2.0]))),
        (ValueError, dict(n_threads=0)),
    ]
    for error, change in cases:
        args = dict(x=x.copy(), positions=ok, cos=cos, sin=sin, n_threads=1) | change
        with pytest.raises(error):
            ops.rotary(args["x"], args["positions"], args["cos"], args["sin"], n_threads=args["n_threads"])
    read_only = x.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        ops.rotary(read_only, ok, cos, sin)


def test_kernels_check_indices_themselves():
    """Called directly, the kernels refuse indices that would read outside the tables."""
    kernels = _native.load("_positions")
    cos, sin = tables(4, 10)
    with pytest.raises(ValueError, match="positions"):
        kernels.rotary(np.zeros((1, 1, 8), np.float32), np.array([10], np.int32), cos, sin, False, 1)
    with pytest.raises(ValueError, match="ids"):
        kernels.embedding(np.array([-1], np.int32), cos, 1.0, np.empty((1, 4), np.float32), 1)


# --- sinusoidal table -----------------------------------------------------------------------------


@given(
    n=st.integers(0, 40),
    half=st.integers(0, 40),
    offset=st.integers(0, 5000),
    fairseq=st.booleans(),
)
def test_sinusoidal_table_matches_reference(n, half, offset, fairseq):
    inc = math.log(10000.0) / max(half - 1, 1) if fairseq else None
    table = ops.sinusoidal_table(n, 2 * half, log_timescale_increment=inc, offset=offset)
    assert table.dtype == np.float32 and table.shape == (n, 2 * half)
    expected = reference.sinusoidal_table(n, 2 * half, inc, offset)
    np.testing.assert_allclose(table, expected, rtol=0, atol=1e-6)  # libm vs numpy exp/sin: an ulp


def test_sinusoidal_table_layout():
    table = ops.sinusoidal_table(3, 4)
    np.testing.assert_array_equal(table[0], [0, 0, 1, 1])  # sin half, then cos half
    np.testing.assert_allclose(table[2, [0, 2]], [math.sin(2), math.cos(2)], rtol=1e-6)
    np.testing.assert_allclose(table[2, [1, 3]], [math.sin(0.02), math.cos(0.02)], rtol=1e-6)


@pytest.mark.parametrize("n, dim", [(4, 7), (-1, 8), (4, -2)])
def test_sinusoidal_table_rejects_bad_sizes(n, dim):
    with pytest.raises(ValueError):
        ops.sinusoidal_table(n, dim)


# --- embedding ------------------------------------------------------------------------------------


@given(
    dtype=st.sampled_from(DTYPES),
    vocab=st.integers(1, 40),
    c=st.integers(0, 17),
    ids_shape=st.sampled_from([(0,), (1,), (7,), (2, 3), (3, 0)]),
    scale=st.sampled_from([1.0, 0.5, 8.0, math.sqrt(11)]),
    seed=st.integers(0, 2**16),
)
def test_embedding_matches_reference(dtype, vocab, c, ids_shape, scale, seed):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((vocab, c)).astype(dtype)
    ids = rng.integers(0, vocab, ids_shape)
    out = ops.embedding(ids, table, scale=scale)
    assert out.shape == ids_shape + (c,) and out.dtype == dtype
    expected = reference.embedding(ids.reshape(-1), table, scale).reshape(out.shape)
    np.testing.assert_array_equal(out, expected)  # one double product, one rounding: exact


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 22.627])
def test_embedding_threads_give_identical_results(dtype, scale):
    rng = np.random.default_rng(5)
    table = rng.standard_normal((1000, 512)).astype(dtype)
    ids = rng.integers(0, 1000, 300)
    one = ops.embedding(ids, table, scale=scale, n_threads=1)
    two = ops.embedding(ids, table, scale=scale, n_threads=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, reference.embedding(ids, table, scale))


def test_embedding_strided_read_only_and_out():
    rng = np.random.default_rng(6)
    table = rng.standard_normal((10, 12)).astype(np.float32)[:, ::2]
    table.flags.writeable = False
    ids = np.array([[9, 0, 3], [3, 3, 1]], np.int64)[:, ::2]
    out = np.empty((2, 2, 6), np.float32)
    assert ops.embedding(ids, table, scale=2.0, out=out) is out
    np.testing.assert_array_equal(out, table[ids] * np.float32(2))


def test_embedding_rejects_bad_inputs():
    table = np.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match="out of range"):
        ops.embedding([0, 5], table)
    with pytest.raises(ValueError, match="out of range"):
        ops.embedding([-1], table)
    with pytest.raises(ValueError):
        ops.embedding(np.array([2**32 + 1]), table)  # would wrap to 1 as int32
    with pytest.raises(TypeError):
        ops.embedding(np.array([0.0]), table)
    with pytest.raises(TypeError):
        ops.embedding([0], table.astype(np.int64))
    with pytest.raises(ValueError):
        ops.embedding([0], table[0])
    with pytest.raises(TypeError):
        ops.embedding([0], table, out=np.empty((1, 4), np.float64))
    with pytest.raises(ValueError):
        ops.embedding([0], table, out=np.empty((2, 4), np.float32))
    with pytest.raises(ValueError):
        ops.embedding([0], table, n_threads=0)
