"""One-shot check of the CUDA backend on a GPU machine, in stages that each report and never stop
the others: device and package report, the CPU extension (built with plain meson when missing),
kernel compilation, the `gpu` tests (every op against the numpy reference; greedy parity of tiny
Marian, GPT-2 and Llama with the CPU path; the engines with device="cuda"), op timings against
numpy, then decoding throughput of an OPUS-MT-shaped model (6+6 layers, d 512, FFN 2048, vocabulary
58101, random weights): tokens/s at batch 1 and 32 for 1 and 2 workers on one GPU, float32,
float16 and bfloat16 (bfloat16 on compute capability 8.0 or later), and ctranslate2 on CUDA in the
same shape and types when it is importable there.

    PYTHONPATH=. python3 benchmarks/gpu_check.py

Needs cupy, numpy, pytest and aiotranslate's runtime dependencies (safetensors, tokenizers, ...):
the package report says which are missing. The CPU extension only speeds up the CPU side (the
parity references and the search's host work); without it the numpy reference runs. If $OUT is set,
the full pytest log is also written to $OUT/gpu_pytest.log. Ends with a compact summary; exits 0 only
when the GPU tests ran and all passed. Budget: under 6 minutes on an H100 (the build and pytest
have their own time limits).
"""

from __future__ import annotations

import glob
import importlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "backends"))  # random_checkpoints: models without torch

PYTEST_TIMEOUT_S = 200
BUILD_TIMEOUT_S = 150
PACKAGES = ("cupy", "numpy", "scipy", "threadpoolctl", "safetensors", "ml_dtypes", "tokenizers",
            "sentencepiece", "pytest", "pytest_asyncio", "mesonbuild", "cython", "ctranslate2")  # fmt: skip
# The machine may lack pytest-asyncio: the ini's asyncio_* keys are then unknown, and the ini's
# filterwarnings=error turns that config warning into an INTERNALERROR, hence the -W. The root
# conftest only sets hypothesis profiles, which the GPU tests do not use, hence --noconftest.
PYTEST_CMD = [
    sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/backends",
    "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestConfigWarning", "--noconftest",
    "--tb=short",
]  # fmt: skip


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def device_report() -> str:
    import cupy

    dev = cupy.cuda.Device(0)
    props = cupy.cuda.runtime.getDeviceProperties(0)
    free, total = dev.mem_info
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    cc = dev.compute_capability
    runtime = cupy.cuda.runtime
    print(f"device 0 of {runtime.getDeviceCount()}: {name}, compute capability {cc[0]}.{cc[1:]}, "
          f"{props['multiProcessorCount']} SMs, {total / 2**30:.1f} GiB ({free / 2**30:.1f} free)")
    print(f"cupy {cupy.__version__}, CUDA runtime {cuda_version(runtime.runtimeGetVersion())}, "
          f"driver {cuda_version(runtime.driverGetVersion())}, numpy {np.__version__}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"CUPY_TF32={os.environ.get('CUPY_TF32', '(unset: full fp32 GEMMs)')}, "
          f"NVIDIA_TF32_OVERRIDE={os.environ.get('NVIDIA_TF32_OVERRIDE', '(unset)')}")
    return f"{name} (cc {cc[0]}.{cc[1:]}), cupy {cupy.__version__}"


def package_report() -> str:
    found, missing = [], []
    for name in PACKAGES:
        try:
            module = importlib.import_module(name)
            found.append(f"{name} {getattr(module, '__version__', '')}".strip())
        except Exception:  # ImportError, or a package broken on this machine
            missing.append(name)
    print("found: " + ", ".join(found))
    print("missing: " + (", ".join(missing) or "none"))
    return "missing: " + (", ".join(missing) or "none")


def build_native() -> str:
    """The CPU extension (`native/`), built with plain meson into a temporary folder and copied into
    aiotranslate/_native when it does not load (meson-python may be absent here)."""
    from aiotranslate import _native

    if _native.load("_gemm") is not None:
        return "already built"
    build = Path(tempfile.mkdtemp(prefix="aiotranslate-build-"))
    steps = [["meson", "setup", str(build), "--buildtype=release", "-Dopenmp=auto"],
             ["meson", "compile", "-C", str(build), "--ninja-args=-k0"]]  # fmt: skip
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    for cmd in steps:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                           timeout=max(1.0, deadline - time.monotonic()))
        if p.returncode:
            print((p.stdout + p.stderr)[-2500:])
    built = glob.glob(str(build / "native" / "*.so"))
    for path in built:
        shutil.copy(path, ROOT / "aiotranslate" / "_native")
    names = sorted(Path(b).name.split(".")[0] for b in built)
    print(f"built {len(built)} modules: {', '.join(names) or 'none'}")
    return f"built {', '.join(names) or 'nothing (numpy reference on the CPU side)'}"


def compile_kernels() -> str:
    """Compile the kernel module of each dtype (NVRTC, or CuPy's disk cache) and time it."""
    from aiotranslate.backends.cuda import kernels

    results = []
    for dtype in (np.float32, np.float16, np.float64):
        t0 = time.perf_counter()
        try:
            kernels.kernel("softmax_rows", dtype)
            results.append(f"{np.dtype(dtype).name} ok ({time.perf_counter() - t0:.1f} s)")
        except Exception as e:  # CompileException carries the NVRTC log
            results.append(f"{np.dtype(dtype).name} FAILED")
            print(f"{np.dtype(dtype).name}: {type(e).__name__}\n{str(e)[:3000]}")
    print("kernel modules: " + ", ".join(results))
    return ", ".join(results)


def run_tests() -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    print(" ".join(PYTEST_CMD[1:]), flush=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(PYTEST_CMD, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=PYTEST_TIMEOUT_S)
        log, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        log = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        log, rc = log + f"\n[gpu_check] pytest stopped after {PYTEST_TIMEOUT_S} s", -1
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_pytest.log").write_text(log)
    # Keep the device tool's output tail for the summary: head (first failure) and tail (summary).
    cut = "\n[... cut; the full log is $OUT/gpu_pytest.log ...]\n"
    print(log if len(log) <= 7000 else log[:3000] + cut + log[-4000:])
    last = log.strip().splitlines()[-1] if log.strip() else "(no output)"
    passed = re.search(r"(\d+) passed", last)
    ok = rc == 0 and passed is not None and int(passed.group(1)) > 0
    return ok, f"{last.strip('= ')} [{time.perf_counter() - t0:.0f} s wall, rc={rc}]"


# ---------------------------------------------------------------- timings


def bf16_gpu() -> bool:
    """GPU 0 runs bfloat16 GEMMs (compute capability 8.0 or later)."""
    from aiotranslate.models.device import BF16_MIN_CAPABILITY, cuda_compute_capability

    return cuda_compute_capability(0) >= BF16_MIN_CAPABILITY


def numpy_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def time_gpu(fn, reps: int) -> float:
    import cupy

    for _ in range(3):  # warm-up: compile, cuBLAS heuristics, memory pool
        fn()
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(reps):
        fn()
    stop.record()
    stop.synchronize()
    return cupy.cuda.get_elapsed_time(start, stop) / reps


def time_cpu(fn, min_s: float = 0.3) -> float:
    fn()
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < min_s:
        fn()
        reps += 1
    return (time.perf_counter() - t0) / reps * 1e3


def cases(rng):
    """(label, work per call, rate unit, gpu fn, cpu fn) at transformer shapes; work is the bytes
    read + written once (memory-bound ops) or the FLOP (GEMMs)."""
    import cupy

    from aiotranslate import ops as gpu
    from aiotranslate.models.device_bf16 import BF16DeviceLinear, bf16_bits
    from aiotranslate.ops import reference

    def f32(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def both(*arrays):  # host arrays and their device copies
        return arrays, tuple(cupy.asarray(a) for a in arrays)

    (x,), (xd,) = both(f32(512, 32000))
    yield ("softmax (512, 32000)", 2 * x.nbytes, "GB/s",
           lambda: gpu.softmax(xd), lambda: numpy_softmax(x))

    (y, g, b), (yd, gd, bd) = both(f32(512, 4096), f32(4096), f32(4096))
    yield ("layer_norm (512, 4096)", 2 * y.nbytes, "GB/s",
           lambda: gpu.layer_norm(yd, gd, bd), lambda: numpy_layer_norm(y, g, b))

    for m, k, n in [(32, 512, 2048), (512, 4096, 4096)]:
        h, d = both(f32(m, k), f32(n, k, scale=k**-0.5), f32(n))
        yield (f"linear+bias M={m} K={k} N={n}", 2 * m * k * n, "TFLOP/s",
               lambda d=d: gpu.linear(*d), lambda h=h: h[0] @ h[1].T + h[2])
        if bf16_gpu():  # the same product with bf16 weights; numpy on the bf16-rounded operands
            lin = BF16DeviceLinear(cupy.asarray(bf16_bits(h[1])), d[2])
            xr, wr = reference.bf16_round(h[0]), reference.bf16_round(h[1])
            yield (f"bf16 linear+bias M={m} K={k} N={n}", 2 * m * k * n, "TFLOP/s",
                   lambda d=d, lin=lin: lin(d[0]), lambda h=h, xr=xr, wr=wr: xr @ wr.T + h[2])

    g, t, dh = 64, 128, 64
    (q, kc, p), (qd, kd, pd) = both(f32(g, t, dh, scale=dh**-0.5), f32(g, t, dh), f32(g, t, t))
    yield (f"batched Q@K^T G={g} T={t} D={dh}", 2 * g * t * t * dh, "TFLOP/s",
           lambda: gpu.batched_matmul(qd, kd, trans_b=True, alpha=0.125),
           lambda: 0.125 * (q @ kc.transpose(0, 2, 1)))
    yield (f"batched P@V G={g} T={t} D={dh}", 2 * g * t * t * dh, "TFLOP/s",
           lambda: gpu.batched_matmul(pd, kd), lambda: p @ kc)


def run_timings() -> list[str]:
    import cupy

    rows = []
    for label, work, unit, gpu_fn, cpu_fn in cases(np.random.default_rng(0)):
        try:
            got, want = cupy.asnumpy(gpu_fn()), cpu_fn()
            diff = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))
            gpu_ms = time_gpu(gpu_fn, reps=50)
            cpu_ms = time_cpu(cpu_fn)
            scale = 1e9 if unit == "GB/s" else 1e12
            row = (f"{label:<34} GPU {gpu_ms:8.3f} ms ({work / gpu_ms / 1e-3 / scale:7.1f} {unit})  "
                   f"CPU {cpu_ms:9.2f} ms  x{cpu_ms / gpu_ms:7.1f}  max rel diff {diff:.1e}")
        except Exception as e:  # one broken case must not hide the others
            row = f"{label:<34} FAILED: {type(e).__name__}: {str(e)[:200]}"
        print(row, flush=True)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- decoding throughput

OPUS = dict(d_model=512, layers=6, heads=8, ffn=2048, vocab=58101, max_positions=512)
SOURCE_TOKENS, NEW_TOKENS = 25, 32


def opus_sources(batch: int, seed: int = 0) -> list[list[int]]:
    """Random source ids (no eos 0, no pad V-1), each ending with eos."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, OPUS["vocab"] - 1, size=(batch, SOURCE_TOKENS - 1))
    return [row.tolist() + [0] for row in ids]


def tokens_per_s(run, batch: int, workers: int, repeats: int = 3) -> float:
    """Target tokens/s of `workers` concurrent calls of `batch` examples (each exactly NEW_TOKENS
    long), median of `repeats` after a warm-up."""
    run(opus_sources(batch), workers)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        run(opus_sources(batch, seed=r + 1), workers)
        times.append(time.perf_counter() - t0)
    return workers * batch * NEW_TOKENS / sorted(times)[len(times) // 2]


def ours(path: Path, compute_type: str):
    from aiotranslate import Translator

    engines = {}

    def run(sources, workers):
        if workers not in engines:
            engines[workers] = Translator(path, device="cuda", compute_type=compute_type,
                                          inter_threads=workers, intra_threads=1)  # fmt: skip
        t = engines[workers]
        assert t.compute_type == compute_type, f"{compute_type} ran as {t.compute_type}"
        options = dict(beam_size=1, max_decoding_length=NEW_TOKENS, min_decoding_length=NEW_TOKENS)
        futures = [t.submit_translate_batch(sources, **options) for _ in range(workers)]
        for f in futures:
            assert len(f.result()[0].hypotheses[0]) == NEW_TOKENS

    return run, lambda: [e.close() for e in engines.values()]


def ctranslate2_engine(path: Path, compute_type: str):
    """ctranslate2 on CUDA over the same checkpoint (converted with its TransformersConverter)."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    if ctranslate2.get_cuda_device_count() == 0:
        raise RuntimeError("ctranslate2 sees no CUDA device")
    out = path.parent / "opus-ct2"
    if not out.exists():
        TransformersConverter(str(path)).convert(str(out), quantization=None)
    engines = {}

    def run(sources, workers):
        if workers not in engines:
            engines[workers] = ctranslate2.Translator(str(out), device="cuda", compute_type=compute_type,
                                                      inter_threads=workers)  # fmt: skip
        t = engines[workers]
        tokens = [[f"t{i}" for i in s] for s in sources]  # token names are only looked up in the vocab
        options = dict(beam_size=1, max_decoding_length=NEW_TOKENS, min_decoding_length=NEW_TOKENS)
        jobs = [t.translate_batch(tokens, asynchronous=True, **options) for _ in range(workers)]
        for job in jobs:
            for result in job:
                result.result()

    return run, lambda: engines.clear()


def run_throughput() -> list[str]:
    from random_checkpoints import marian

    path = marian(Path(tempfile.mkdtemp(prefix="aiotranslate-opus-")) / "opus", **OPUS)
    rows = [f"OPUS-MT shape {OPUS}, {SOURCE_TOKENS} source -> {NEW_TOKENS} target tokens, greedy"]
    print(rows[0])
    types = ("float32", "float16", "bfloat16") if bf16_gpu() else ("float32", "float16")
    engines = [(f"aiotranslate {c}", ours, c) for c in types]
    engines += [(f"ctranslate2 {c}", ctranslate2_engine, c) for c in types]
    for label, make, compute_type in engines:
        try:
            run, close = make(path, compute_type)
        except Exception as e:  # ctranslate2 missing, or without CUDA here: skip its rows
            rows.append(f"{label:<24} skipped: {type(e).__name__}: {str(e)[:160]}")
            print(rows[-1], flush=True)
            continue
        try:
            for workers in (1, 2):
                for batch in (1, 32):
                    try:
                        rate = f"{tokens_per_s(run, batch, workers):9.1f} tokens/s"
                    except Exception as e:
                        rate = f"FAILED: {type(e).__name__}: {str(e)[:200]}"
                    rows.append(f"{label:<24} workers {workers} batch {batch:>2}: {rate}")
                    print(rows[-1], flush=True)
        finally:
            close()
    return rows


def stage(title: str, fn, default):
    """Run one stage; a failure prints its traceback and gives `default`, so the next stages run."""
    section(title)
    t0 = time.perf_counter()
    try:
        result = fn()
    except Exception:
        print("".join(traceback.format_exc()[-3000:]))
        result = default
    print(f"[{title}: {time.perf_counter() - t0:.0f} s]", flush=True)
    return result


def main() -> int:
    t0 = time.perf_counter()
    device = stage("device", device_report, "FAILED (see above)")
    packages = stage("packages", package_report, "FAILED")
    native = stage("CPU extension", build_native, "FAILED (numpy reference on the CPU side)")
    compiled = stage("kernel compilation", compile_kernels, "FAILED")
    tests_ok, tests_line = stage("gpu tests", run_tests, (False, "FAILED to run"))
    timings = stage("timings: GPU (cupy events, 50 calls) vs numpy float32 on the CPU", run_timings, [])
    throughput = stage("decoding throughput", run_throughput, ["FAILED (see above)"])
    section("summary")
    print(f"device: {device}")
    print(f"packages: {packages}")
    print(f"CPU extension: {native}")
    print(f"kernels: {compiled}")
    print(f"gpu tests: {tests_line}  [{'OK' if tests_ok else 'NOT OK'}]")
    for row in timings + throughput:
        print("  " + row)
    print(f"gpu_check finished in {time.perf_counter() - t0:.0f} s")
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
