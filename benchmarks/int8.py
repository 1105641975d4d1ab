"""Quantized decoding: our int8 and bfloat16 compute types next to our float32 and CTranslate2 (int8
and float32), on the random-weight OPUS-MT shape of `bench_models` (source 25 tokens, exactly 32
target tokens, every engine forced to that length).

    python benchmarks/int8.py [--threads 1 2] [--batch 1 32] [--search greedy beam4] [--repeats 5]
                              [--compute-types float32 int8 bfloat16] [--isa avx2]

Columns, target tokens per second (batch x 32 / seconds of one call):
  ours:<type>  our model converted to that compute type (`api.compute_type.apply`), run on the worker's
               code path (encode + `decoding.decode`);
  ct2:int8, ct2:float32  ctranslate2 on the same checkpoint, quantized at load (compute_type="int8");
and the ratios int8 / ct2:int8 and int8 / float32 (ours). At batch 1 greedy it also prints, per
compute type, the bytes of weights one decoding step reads and the bandwidth that achieves, next to
the machine's (a large numpy copy at the same thread count).

The machine is shared: each repeat runs every engine once, in turn, with a pause between engines; the
figures are medians of the repeats. Read the ratios.

--isa avx2 runs both engines as on a CPU without AVX-512 (most of the AMD EPYC and Intel client parts
in service): ours with AIOTRANSLATE_FORCE_CPU_ISA=AVX2, CTranslate2 with CT2_FORCE_CPU_ISA=AVX2 and
its GEMM libraries held to AVX2 (MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA). bfloat16 needs
AVX512_BF16: leave it out there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models as bm  # noqa: E402

MODEL, SOURCE, NEW = "opus", 25, 32
SEARCHES = {"greedy": 1, "beam4": 4}
SETTLE_S = 0.2


def load_ours(compute_type: str):
    from aiotranslate.api.compute_type import apply, resolve
    from aiotranslate.models.registry import load_model

    effective = resolve(compute_type)
    if effective.split("_")[0] != compute_type.split("_")[0]:
        raise SystemExit(f"compute type {compute_type} is not supported here (it resolves to {effective})")
    return apply(load_model(bm.checkpoint(MODEL)), effective)


def runners(models: dict, ct2: dict, batch: int, beam: int, n_threads: int) -> dict:
    """engine -> fn() returning the number of new tokens of each row."""
    from aiotranslate.decoding import DecodingOptions, decode
    from aiotranslate.decoding.search import pad

    shape = bm.SHAPES[MODEL]
    inputs = bm.random_ids(MODEL, batch, SOURCE)
    names = [[bm.token_name(shape, i) for i in row] for row in inputs]
    ids, lengths = pad(inputs)
    options = DecodingOptions(beam_size=beam, max_length=NEW, min_length=NEW, end_ids=(shape.eos,),
                              n_threads=n_threads, return_prefix=False)  # fmt: skip

    def ours(model):
        def run():
            state = model.encode(ids, lengths, n_threads=n_threads)
            results = decode(model, state, [[model.decoder_start_token_id]] * batch, options)
            return [len(r.hypotheses[0]) for r in results]

        return run

    def theirs(translator):
        def run():
            out = translator.translate_batch(names, beam_size=beam, max_decoding_length=NEW, min_decoding_length=NEW)
            return [len(r.hypotheses[0]) for r in out]

        return run

    engines = {f"ours:{t}": ours(m) for t, m in models.items()}
    engines.update({f"ct2:{t}": theirs(tr) for t, tr in ct2.items()})
    return engines


def measure(engines: dict, batch: int, repeats: int) -> dict[str, float]:
    for name, fn in engines.items():  # warm-up, and every engine decodes exactly NEW tokens per row
        got = fn()
        if list(got) != [NEW] * batch:
            raise RuntimeError(f"{name} decoded {sorted(set(got))} tokens per row, expected {NEW}")
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, fn in engines.items():
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: batch * NEW / statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--search", nargs="+", choices=list(SEARCHES), default=list(SEARCHES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compute-types", nargs="+", choices=["float32", "int8", "int8_bfloat16", "bfloat16"],
                        help="default: float32 int8 bfloat16 (float32 int8 with --isa avx2)")  # fmt: skip
    parser.add_argument("--isa", choices=["avx2"], help="run both engines as on a CPU with AVX2 and no AVX-512")
    args = parser.parse_args()
    compute_types = args.compute_types or ["float32", "int8"] + ([] if args.isa else ["bfloat16"])
    if args.isa:
        if any("bfloat16" in t for t in compute_types):
            parser.error("bfloat16 needs AVX512_BF16: it has no AVX2 kernels")
        use_avx2()
    report(args.threads, args.batch, args.search, args.repeats, compute_types)


def use_avx2() -> None:
    """Both engines told to run as on an AVX2 CPU, before they load."""
    if any(name == "ctranslate2" or name.startswith("aiotranslate") for name in sys.modules):
        raise RuntimeError("use_avx2 must run before aiotranslate and ctranslate2 are imported")
    os.environ.update(AIOTRANSLATE_FORCE_CPU_ISA="AVX2", CT2_FORCE_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2",
                      ONEDNN_MAX_CPU_ISA="AVX2")  # fmt: skip


def report(threads: list[int], batches: list[int], searches: list[str], repeats: int, compute_types: list[str]):
    """Print the tables of the module docstring (also `benchmarks/decode.py --compute-types`)."""
    import ctranslate2

    from aiotranslate.ops.quantized import isa

    print(f"# int8 benchmark: {bm.load_line()}; ctranslate2 {ctranslate2.__version__}; our kernels {isa()}")
    print(f"# {MODEL}: {SOURCE} source tokens -> {NEW} target tokens; {repeats} interleaved repeats, medians")
    models = {t: load_ours(t) for t in compute_types}
    for n_threads in threads:
        ct2 = {
            t: ctranslate2.Translator(str(bm.ctranslate2_model(MODEL)), device="cpu", compute_type=t,
                                      intra_threads=n_threads, inter_threads=1)  # fmt: skip
            for t in ("int8", "float32")
        }
        names = [f"ours:{t}" for t in models] + [f"ct2:{t}" for t in ct2]
        print(f"\n## {n_threads} thread(s), target tokens/s")
        print(f"{'batch':>5} {'search':>6} | " + " ".join(f"{n:>13}" for n in names) + " | int8/ct2:int8 int8/float32")
        for search in searches:
            for batch in batches:
                rate = measure(runners(models, ct2, batch, SEARCHES[search], n_threads), batch, repeats)
                ratios = ""
                if "ours:int8" in rate:
                    vs_float = rate["ours:int8"] / rate["ours:float32"] if "ours:float32" in rate else float("nan")
                    ratios = f"{rate['ours:int8'] / rate['ct2:int8']:13.2f} {vs_float:12.2f}"
                print(f"{batch:>5} {search:>6} | " + " ".join(f"{rate[n]:13.1f}" for n in names) + f" | {ratios}",
                      flush=True)
                if batch == 1 and search == "greedy":
                    machine = bm.memory_bandwidth(n_threads)
                    step = {t: bm.weight_bytes_per_step(m) for t, m in models.items()}
                    achieved = "; ".join(
                        f"{t} {b / 1e6:.0f} MB/step, {rate[f'ours:{t}'] * b / 1e9:.1f} GB/s" for t, b in step.items()
                    )
                    print(f"      weights read: {achieved}; numpy copy {machine / 1e9:.1f} GB/s", flush=True)


if __name__ == "__main__":
    main()
