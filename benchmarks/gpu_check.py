"""One-shot check of the CUDA backend on a GPU machine: device report, kernel compilation, the
`gpu` tests, then timings of a few ops against numpy on the CPU at transformer shapes.

    PYTHONPATH=. python3 benchmarks/gpu_check.py

Needs cupy, numpy and pytest only: the GPU ops and their tests are pure Python (the compiled CPU
extension is not needed). If $OUT is set, the full pytest log is also written to $OUT/gpu_pytest.log.
Ends with a compact summary; exits 0 only when the GPU tests ran and all passed.
Budget: under 4 minutes (pytest is stopped after PYTEST_TIMEOUT_S).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PYTEST_TIMEOUT_S = 170
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

    from aiotranslate.backends.cuda import ops as gpu

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


def main() -> int:
    t0 = time.perf_counter()
    section("device")
    device = device_report()
    section("kernel compilation")
    compiled = compile_kernels()
    section("gpu tests")
    tests_ok, tests_line = run_tests()
    section("timings: GPU (cupy events, 50 calls) vs numpy float32 on the CPU")
    timings = run_timings()
    section("summary")
    print(f"device: {device}")
    print(f"kernels: {compiled}")
    print(f"gpu tests: {tests_line}  [{'OK' if tests_ok else 'NOT OK'}]")
    for row in timings:
        print("  " + row)
    print(f"gpu_check finished in {time.perf_counter() - t0:.0f} s")
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
