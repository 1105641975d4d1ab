"""Packed weights gathered on huge pages (`layers.weight_memory`, what the compute-type pass does)
against the same weights where packing left them, on the OPUS-MT shape of `int8.py`.

    python benchmarks/weight_memory.py [--compute-types int8 float32] [--threads 1] [--search greedy beam4]
                                       [--repeats 9]

Prints milliseconds per decoding step at batch 1 for both, in one process, the two models run in
turn (interleaved), medians of the repeats, and their ratio; and how much of the process's
anonymous memory sits on huge pages (Linux). Read the ratio: the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import int8  # noqa: E402


def huge_pages() -> str:
    try:
        rollup = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return "n/a"
    return rollup.split("AnonHugePages:")[1].splitlines()[0].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compute-types", nargs="+", default=["int8", "float32"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--search", nargs="+", default=list(int8.SEARCHES), choices=list(int8.SEARCHES))
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    from aiotranslate.layers import weight_memory

    gather = weight_memory.gather
    print(f"# weight memory: batch 1, {args.repeats} interleaved repeats, median ms per step")
    for compute_type in args.compute_types:
        weight_memory.gather = lambda forms: None
        scattered = int8.load_ours(compute_type)
        weight_memory.gather = gather
        gathered = int8.load_ours(compute_type)
        for n_threads in args.threads:
            for search in args.search:
                beam = int8.SEARCHES[search]
                runs = [int8.runners({compute_type: m}, {}, 1, beam, n_threads)[f"ours:{compute_type}"]
                        for m in (scattered, gathered)]
                times: list[list[float]] = [[], []]
                for run in runs:
                    run()  # warm-up
                for _ in range(args.repeats):
                    for run, spent in zip(runs, times):
                        start = time.perf_counter()
                        run()
                        spent.append((time.perf_counter() - start) / int8.NEW * 1e3)
                before, after = (statistics.median(t) for t in times)
                print(f"{compute_type:>8} {n_threads}t {search:>6}: scattered {before:.3f}  gathered {after:.3f}  "
                      f"speed-up {before / after:.3f}x  (AnonHugePages {huge_pages()})", flush=True)
        del scattered, gathered


if __name__ == "__main__":
    main()
