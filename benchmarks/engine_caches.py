"""The engines' two caches, each against running without it, in one process, calls interleaved.

    python benchmarks/engine_caches.py [--rounds 5] [--batch 32]

- Buffer cache (native/buffer_cache.h; what the engines' worker threads allocate numpy arrays
  with): greedy decoding through the async API of the OPUS-MT-shaped Marian (25 source tokens -> 32)
  and GPT-2-small (32-token prompt -> 32), at --batch, 1 thread, one engine with the cache and one
  without (its worker keeps numpy's own allocator): target tokens/s (median of --rounds) and the
  process's minor page faults per call (getrusage: the faults of the decoding, which runs on the
  engine's worker thread while the caller waits).
- Static-prompt cache (api/static_prompts.py): GPT-2 small, a 200-token static prompt before 8
  prompts of 8 tokens, 8 new tokens, `cache_static_prompt` True against False: seconds per call.

Random weights (bench_models.py builds and caches the checkpoints).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_models as bm  # noqa: E402

import aiotranslate.api.engine as engine_module  # noqa: E402
from aiotranslate import Generator, Translator  # noqa: E402

NEW_TOKENS = 32
INPUT_TOKENS = {"opus": 25, "gpt2": 32}


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def engine(name: str, cached: bool):
    """An engine over the benchmark checkpoint whose worker allocates through the buffer cache or not
    (the module-level handle the workers install at start, set aside while this one starts)."""
    kept = engine_module._buffers
    engine_module._buffers = kept if cached else None
    try:
        kind = Translator if bm.SHAPES[name].kind == "seq2seq" else Generator
        return kind(bm.checkpoint(name), inter_threads=1, intra_threads=1)
    finally:
        engine_module._buffers = kept


async def decode(e, name: str, inputs):
    n = NEW_TOKENS
    if isinstance(e, Translator):
        return await e.translate_batch(inputs, beam_size=1, max_decoding_length=n, min_decoding_length=n)
    return await e.generate_batch(inputs, max_length=n, min_length=n, include_prompt_in_result=False)


async def buffer_cache(name: str, batch: int, rounds: int) -> None:
    inputs = bm.random_ids(name, batch, INPUT_TOKENS[name])
    engines = {"cache": engine(name, True), "numpy": engine(name, False)}
    times: dict[str, list[float]] = {k: [] for k in engines}
    counts: dict[str, list[int]] = {k: [] for k in engines}
    try:
        for e in engines.values():
            await decode(e, name, inputs)  # warm-up
        for _ in range(rounds):
            for label, e in engines.items():
                before, start = faults(), time.perf_counter()
                await decode(e, name, inputs)
                times[label].append(time.perf_counter() - start)
                counts[label].append(faults() - before)
    finally:
        for e in engines.values():
            e.close()
    rate = {k: batch * NEW_TOKENS / statistics.median(t) for k, t in times.items()}
    print(f"{name} batch {batch}: " + ", ".join(
        f"{k} {rate[k]:.1f} tokens/s, {statistics.median(counts[k]):.0f} faults/call" for k in engines
    ) + f"; cache / numpy {rate['cache'] / rate['numpy']:.3f}")  # fmt: skip


async def static_prompt(rounds: int) -> None:
    static = bm.random_ids("gpt2", 1, 200, seed=3)[0]
    prompts = bm.random_ids("gpt2", 8, 8)
    times: dict[bool, list[float]] = {True: [], False: []}
    async with Generator(bm.checkpoint("gpt2"), inter_threads=1, intra_threads=1) as g:
        for i in range(rounds + 1):
            for cached in (True, False):
                start = time.perf_counter()
                await g.generate_batch(prompts, max_length=8, static_prompt=static, cache_static_prompt=cached,
                                       include_prompt_in_result=False)  # fmt: skip
                if i:  # the first round reads the prompt into the cache: a warm-up
                    times[cached].append(time.perf_counter() - start)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"gpt2 static prompt 200 tokens, batch 8 x 8 tokens, 8 new: cached {on:.2f} s, read every call "
          f"{off:.2f} s per call ({off / on:.1f}x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    print(f"# engine caches: {bm.load_line()}; medians of {args.rounds} interleaved rounds, 1 thread")
    for name in ("opus", "gpt2"):
        asyncio.run(buffer_cache(name, args.batch, args.rounds))
    asyncio.run(static_prompt(args.rounds))


if __name__ == "__main__":
    main()
