"""Kernel timings against numpy, at each thread count.

For every case: our time through `aiotranslate.ops` (with n_threads), numpy's time for the same result
(numpy's own BLAS limited to the same thread count with threadpoolctl, around numpy's calls only), and
ratio = numpy / ours (> 1: we are faster). Each side's time is the median of several repeats run as a
block; the two blocks alternate over --rounds rounds (which side goes first alternating too), and the
ratio is the median of the rounds' ratios, so a drift of the shared machine's memory bandwidth between
blocks does not decide it. Where the project sets a bar for an op the ratio is marked PASS or below. Families without their native module run the numpy
reference fallback (the header says which are loaded), so their figures mean nothing until it is built.

    python benchmarks/kernels.py [--threads 1 2] [--rounds 3] [--quick] [--match TEXT]

The machine is shared: absolute times drift, the side-by-side ratios are what to read. Multithreaded
figures need idle cores: with other work running, every parallel region waits for a time slice (the
header prints the load average).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_info

from aiotranslate import _native, ops

FAMILIES = ["_gemm", "_softmax", "_norms", "_activations", "_positions", "_select"]
GEMM_SHAPES = [(1, 512, 512), (1, 512, 2048), (8, 512, 512), (32, 512, 2048), (128, 512, 512),
               (512, 512, 2048), (1, 768, 3072), (32, 768, 3072), (1, 576, 1536), (16, 576, 49152)]
ROW_SHAPES = [(32, 512), (128, 1024), (512, 2048), (8, 768), (64, 3072)]
ATTENTION_T = [1, 16, 64, 128]
STREAM_WEIGHTS = 48  # x 4 MiB: the M = 1 "from memory" rows stream 192 MiB, 6x the L3 of the machine
ELEMENTWISE_BAR = 2.0  # softmax, layer_norm, gelu
SETTLE_S = 0.25  # pause before a multithreaded block: OpenBLAS workers spin about 0.1 s after a call


def numpy_blas():
    """threadpoolctl's handle on the BLAS that numpy calls, apart from the one our kernels call.

    Limiting *every* BLAS (`threadpool_limits(n, user_api="blas")` around both sides, as this script
    once did) also raises scipy's OpenBLAS, which our GEMM calls once per OpenMP thread and which
    `ops.gemm` holds to one thread: each of our 2 threads then started a 2-thread OpenBLAS call and
    they queued on its lock (0.02x numpy at (128, 512, 512), 2 threads). numpy's wheels ship their
    own OpenBLAS (under numpy.libs), so only that one gets the compared thread count. A BLAS that
    numpy shares with scipy (system builds) is limited around numpy's calls only."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    root = os.path.dirname(os.path.realpath(np.__file__))  # matches numpy/ and numpy.libs/
    own = [lib.filepath for lib in controller.lib_controllers
           if lib.user_api == "blas" and os.path.realpath(lib.filepath).startswith(root)]
    return controller.select(filepath=own) if own else controller.select(user_api="blas")


@dataclass
class Case:
    family: str  # native module behind the op
    label: str
    ours: Callable[[int], object]  # n_threads -> result
    numpy: Callable[[], object]
    bar: float | None = None


def gemm_bar(m: int) -> float | None:
    return 0.95 if m >= 128 else 1.0 if m <= 32 else None


def numpy_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    d = x - mean
    return d / np.sqrt((d * d).mean(axis=-1, keepdims=True) + eps) * gamma + beta


def numpy_gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


def numpy_rotary(x, positions, cos, sin, interleaved):
    """In place on float32 x, the way a numpy model would do it."""
    r2 = cos.shape[1]
    c, s = cos[positions][:, None, :], sin[positions][:, None, :]
    a_at, b_at = (slice(0, 2 * r2, 2), slice(1, 2 * r2, 2)) if interleaved else (slice(0, r2), slice(r2, 2 * r2))
    a, b = x[..., a_at], x[..., b_at]
    x[..., a_at], x[..., b_at] = a * c - b * s, b * c + a * s
    return x


def numpy_topk(x, k):
    """k largest per row, sorted: argpartition then a sort of the k (argsort of the row for large k)."""
    if 4 * k >= x.shape[1]:
        idx = np.argsort(-x, axis=-1, kind="stable")[:, :k]
    else:
        idx = np.argpartition(-x, k - 1, axis=-1)[:, :k]
        idx = np.take_along_axis(idx, np.argsort(-np.take_along_axis(x, idx, -1), axis=-1, kind="stable"), -1)
    return np.take_along_axis(x, idx, -1), idx


def cases(rng: np.random.Generator) -> list[Case]:
    f32 = np.float32
    out = []
    for m, k, n in GEMM_SHAPES:
        x, w = rng.standard_normal((m, k), f32), rng.standard_normal((n, k), f32) / 32
        out.append(Case("_gemm", f"linear M,K,N={m},{k},{n}", lambda t, x=x, w=w: ops.linear(x, w, n_threads=t),
                        lambda x=x, w=w: x @ w.T, gemm_bar(m)))
        # What the models' float32 layers run: the weight packed once, at load (`ops.PackedWeight`).
        out.append(Case("_gemm", f"linear packed M,K,N={m},{k},{n}",
                        lambda t, x=x, w=ops.PackedWeight.pack(w): ops.linear(x, w, n_threads=t),
                        lambda x=x, w=w: x @ w.T, gemm_bar(m)))
    # Batch-1 decoding: one row against weights that come from memory, not cache (a set of distinct
    # weights larger than L3, each read once per pass). No bar: the cached rows above are the issue's.
    x = rng.standard_normal((1, 512), f32)
    ws = [rng.standard_normal((2048, 512), f32) for _ in range(STREAM_WEIGHTS)]
    pws = [ops.PackedWeight.pack(w) for w in ws]
    for label, weights in (("linear", ws), ("linear packed", pws)):
        out.append(Case("_gemm", f"{label} M,K,N=1,512,2048 from memory (x{STREAM_WEIGHTS})",
                        lambda t, x=x, ws=weights: [ops.linear(x, w, n_threads=t) for w in ws],
                        lambda x=x, ws=ws: [x @ w.T for w in ws]))
    for t_len in ATTENTION_T:
        q, kv = rng.standard_normal((64, t_len, 64), f32), rng.standard_normal((64, t_len, 64), f32)
        p = rng.random((64, t_len, t_len), f32)
        out.append(Case("_gemm", f"batched_matmul QK^T G=64 T={t_len} D=64",
                        lambda t, q=q, kv=kv: ops.batched_matmul(q, kv, trans_b=True, n_threads=t),
                        lambda q=q, kv=kv: q @ kv.transpose(0, 2, 1)))
        out.append(Case("_gemm", f"batched_matmul PV G=64 T={t_len} D=64",
                        lambda t, p=p, kv=kv: ops.batched_matmul(p, kv, n_threads=t), lambda p=p, kv=kv: p @ kv))
    for shape in ROW_SHAPES:
        x = rng.standard_normal(shape, f32)
        gamma, beta = rng.standard_normal(shape[1], f32), rng.standard_normal(shape[1], f32)
        out += [
            Case("_softmax", f"softmax {shape}", lambda t, x=x: ops.softmax(x, n_threads=t),
                 lambda x=x: numpy_softmax(x), ELEMENTWISE_BAR),
            Case("_norms", f"layer_norm {shape}", lambda t, x=x, g=gamma, b=beta: ops.layer_norm(x, g, b, n_threads=t),
                 lambda x=x, g=gamma, b=beta: numpy_layer_norm(x, g, b), ELEMENTWISE_BAR),
            Case("_activations", f"gelu_tanh {shape}", lambda t, x=x: ops.activation(x, "gelu_tanh", n_threads=t),
                 lambda x=x: numpy_gelu_tanh(x), ELEMENTWISE_BAR),
        ]
    # Rotary: decode steps and prefill, Llama half-split, NeoX partial, GPT-J interleaved.
    for n, h, d, r2, interleaved in [(1, 32, 128, 64, False), (8, 32, 128, 64, False), (512, 12, 64, 32, False),
                                     (512, 32, 128, 16, False), (512, 16, 256, 32, True)]:
        x = rng.standard_normal((n, h, d), f32)
        cos, sin = ops.rotary_tables(1.0 / 10000 ** (np.arange(r2) / r2), 4096)
        positions = rng.integers(0, 4096, n).astype(np.int32)
        kind = "interleaved" if interleaved else f"half R2={r2}"
        out.append(Case("_positions", f"rotary N,H,D={n},{h},{d} {kind}",
                        lambda t, x=x, p=positions, c=cos, s=sin, i=interleaved: ops.rotary(x, p, c, s, interleaved=i, n_threads=t),
                        lambda x=x, p=positions, c=cos, s=sin, i=interleaved: numpy_rotary(x, p, c, s, i)))
    table = rng.standard_normal((32000, 512), f32)
    for n, scale in [(1, 1.0), (32, 22.6), (512, 22.6), (4096, 1.0)]:
        ids = rng.integers(0, 32000, n).astype(np.int32)
        out.append(Case("_positions", f"embedding N={n} C=512 scale={scale}",
                        lambda t, ids=ids, s=scale: ops.embedding(ids, table, scale=s, n_threads=t),
                        (lambda ids=ids: table[ids]) if scale == 1.0 else (lambda ids=ids, s=scale: table[ids] * f32(s))))
    for r, v in [(1, 32000), (8, 50257), (64, 32000)]:
        x = rng.standard_normal((r, v), f32)
        out.append(Case("_select", f"argmax R,V={r},{v}", lambda t, x=x: ops.argmax(x, n_threads=t),
                        lambda x=x: np.argmax(x, axis=-1)))
    for r, v, k in [(1, 32000, 8), (8, 50257, 8), (64, 32000, 8), (8, 32000, 50), (8, 32000, 1000), (8, 32000, 32000)]:
        x = rng.standard_normal((r, v), f32)
        out.append(Case("_select", f"topk R,V={r},{v} k={k}", lambda t, x=x, k=k: ops.topk(x, k, n_threads=t),
                        lambda x=x, k=k: numpy_topk(x, k)))
    return out


def per_call(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def block(fn, threads, n_threads: int, repeats: int, target_s: float, blas) -> float:
    """Median seconds per call of fn over `repeats` timings of one block, with numpy's BLAS (`blas`,
    from `numpy_blas`) at `threads` (None: as it is).

    With several threads the block starts after a pause: idle OpenBLAS workers spin for a while after
    a call (and OpenMP's for a shorter while), and on a 2-core machine a spinning thread stalls the
    other side's team for a scheduler time slice, which interleaved calls would measure instead.
    """
    if n_threads > 1:
        time.sleep(SETTLE_S)
    with blas.limit(limits=threads):
        number = max(1, int(target_s / max(min(per_call(fn, 1) for _ in range(3)), 1e-7)))  # warm-up too
        return statistics.median(per_call(fn, number) for _ in range(repeats))


def compare(case: Case, n_threads: int, rounds: int, repeats: int, target_s: float, blas) -> tuple[float, ...]:
    """(ours, numpy, ratio): each side's median over the rounds of its block medians, and the median of
    the rounds' numpy / ours ratios; the side that goes first alternates between rounds."""
    sides = ((lambda: case.ours(n_threads), None), (case.numpy, n_threads))
    times: list[tuple[float, float]] = []
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        got = {i: block(*sides[i], n_threads, repeats, target_s, blas) for i in order}
        times.append((got[0], got[1]))
    ours, theirs = (statistics.median(t[i] for t in times) for i in (0, 1))
    return ours, theirs, statistics.median(t[1] / t[0] for t in times)


def header(blas) -> None:
    cpu = _native.load("_cpu")
    openmp = "on" if cpu is not None and cpu.openmp_enabled() else "off"
    loaded = ", ".join(f"{name[1:]}={'native' if _native.load(name) else 'numpy fallback'}" for name in FAMILIES)
    libraries = "; ".join(f"{i['internal_api']} {i['version']} {os.path.basename(i['filepath'])} "
                          f"({i['num_threads']} threads)" for i in threadpool_info() if i["user_api"] == "blas")
    numpy_libs = ", ".join(os.path.basename(i["filepath"]) for i in blas.info())
    print(f"numpy {np.__version__}, OpenMP {openmp}; BLAS: {libraries or 'none found'}")
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"numpy's BLAS ({numpy_libs or 'none found'}) gets the compared thread count around numpy's calls "
          f"only; {SETTLE_S} s pause before each multithreaded block; OMP_WAIT_POLICY={wait_policy}")
    print(f"kernels: {loaded}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("gelu_tanh vs numpy 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x*x*x))); all float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both sides (default: 3)")
    parser.add_argument("--quick", action="store_true", help="one round of 3 short repeats: a smoke run, noisy figures")
    parser.add_argument("--match", default="", help="only the cases whose label contains this text")
    args = parser.parse_args()
    rounds, repeats, target_s = (1, 3, 0.005) if args.quick else (args.rounds, 5, 0.05)
    all_cases = [case for case in cases(np.random.default_rng(0)) if args.match in case.label]
    blas = numpy_blas()
    header(blas)
    marks = {"PASS": 0, "below": 0}
    for n_threads in args.threads:
        print(f"\n== {n_threads} thread(s) ==")
        print(f"{'op':44} {'family':12} {'ours us':>10} {'numpy us':>10} {'ratio':>7} {'bar':>5}")
        for case in all_cases:
            ours, theirs, ratio = compare(case, n_threads, rounds, repeats, target_s, blas)
            mark = ""
            if case.bar is not None:
                mark = "PASS" if ratio >= case.bar else "below"
                marks[mark] += 1
            bar = f"{case.bar:.2f}" if case.bar is not None else "-"
            print(f"{case.label:44} {case.family[1:]:12} {ours * 1e6:10.1f} {theirs * 1e6:10.1f} "
                  f"{ratio:7.2f} {bar:>5} {mark}")
    print(f"\nbars: {marks['PASS']} PASS, {marks['below']} below")


if __name__ == "__main__":
    main()
