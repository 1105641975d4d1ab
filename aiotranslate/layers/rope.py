"""Rotary inverse frequencies and attention scaling for each `rope_type` of Hugging Face configs.

`rope_frequencies(params, head_dim, max_positions, seq_len)` returns (inv_freq float32 (R2,),
attention_scaling), the quantities transformers derives for the same settings (facts from
transformers' `modeling_rope_utils.py`; the formulas follow the cited papers):
- default:  inv_freq[i] = theta^(-2i/dim)
- linear:   inv_freq / factor (position interpolation)
- dynamic:  NTK-aware: theta grows with the sequence once it exceeds max_positions,
            theta' = theta * (factor * L / max_positions - (factor - 1))^(dim / (dim - 2))
- llama3:   long wavelengths divided by factor, short ones kept, a smooth blend between
- yarn:     per-frequency blend of interpolation and extrapolation over a linear ramp between the
            dimensions turning beta_fast and beta_slow times over the pretraining length, and an
            attention factor 0.1 * ln(factor) + 1 (or the mscale ratio) applied to cos and sin.
dim = head_dim * partial_rotary_factor. `params` is the flat dict of `convert.config.rope_parameters`.

What it is not: the rotation itself (`positions.Rotary`, `ops.rotary`).
"""

from __future__ import annotations

import math

import numpy as np

ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn")


def _need(params: dict, key: str):
    if params.get(key) is None:
        raise ValueError(f"rope_type {params['rope_type']!r} needs {key!r}")
    return params[key]


def rope_frequencies(
    params: dict, head_dim: int, max_positions: int, seq_len: int | None = None
) -> tuple[np.ndarray, float]:
    """(inv_freq float32 (dim/2,), attention_scaling); seq_len only matters to `dynamic`."""
    rope_type = params["rope_type"]
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"rope_type {rope_type!r} is not supported; supported: {', '.join(ROPE_TYPES)}")
    theta = float(params["rope_theta"])
    dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim  # (R2,) 2i / dim
    inv_freq = theta**-exponents
    scaling = 1.0

    if rope_type == "linear":
        inv_freq = inv_freq / float(_need(params, "factor"))
    elif rope_type == "dynamic":
        factor = float(_need(params, "factor"))
        length = max(seq_len or max_positions, max_positions)
        grown = theta * (factor * length / max_positions - (factor - 1)) ** (dim / (dim - 2))
        inv_freq = grown**-exponents
    elif rope_type == "llama3":
        inv_freq = _llama3(inv_freq, params)
    elif rope_type == "yarn":
        inv_freq, scaling = _yarn(theta, dim, exponents, params, max_positions)
    return inv_freq.astype(np.float32), float(scaling)


def _llama3(inv_freq: np.ndarray, params: dict) -> np.ndarray:
    factor = float(_need(params, "factor"))
    low, high = float(_need(params, "low_freq_factor")), float(_need(params, "high_freq_factor"))
    context = float(_need(params, "original_max_position_embeddings"))
    wavelen = 2 * math.pi / inv_freq
    # Wavelengths longer than context/low are interpolated, shorter than context/high kept as is;
    # in between, blend the two by where context/wavelen falls between low and high.
    scaled = np.where(wavelen > context / low, inv_freq / factor, inv_freq)
    smooth = (context / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= context / high) & (wavelen <= context / low)
    return np.where(medium, blended, scaled)


def _yarn(theta: float, dim: int, exponents: np.ndarray, params: dict, max_positions: int):
    original = float(_need(params, "original_max_position_embeddings"))
    factor = params.get("factor")
    factor = float(factor) if factor is not None else max_positions / original

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    scaling = params.get("attention_factor")
    if scaling is None:
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        scaling = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)

    def dimension_of(rotations: float) -> float:
        # The dimension whose frequency turns `rotations` times over the pretraining length.
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = dimension_of(params.get("beta_fast") or 32), dimension_of(params.get("beta_slow") or 1)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    extrapolate = 1.0 - ramp  # 1: keep the original frequency (fast dims), 0: interpolate by factor
    divisors = theta**exponents  # 1 / the original inv_freq
    inv_freq = (1.0 / (factor * divisors)) * ramp + (1.0 / divisors) * extrapolate
    return inv_freq, scaling
