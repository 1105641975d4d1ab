"""Decoding throughput: target tokens/s of our engine against transformers and ctranslate2.

    python benchmarks/decode.py [--quick] [--threads 1 2] [--models opus gpt2] [--batch 1 32]
                                [--search greedy beam4] [--repeats N] [--compute-types float32 int8 bfloat16]

Models (random weights, see `bench_models`): `opus`, a Marian with the OPUS-MT shape (source 25
tokens, exactly 32 target tokens), and `gpt2`, GPT-2 small (prompt 32 tokens, exactly 64 new ones).
Every engine decodes the same number of tokens: min length = max length, so no row stops early.
Default batches: 1 and 32 for both models (GPT-2 at batch 32 prefills 1024 tokens: the slowest row).

Columns, all target tokens per second (batch x new tokens / seconds of one call):
  api     ours through the public async API (`Translator.translate_batch` / `Generator.generate_batch`,
          inter_threads=1, intra_threads=N), awaited on an event loop;
  core    ours called synchronously on the worker's code path (encode/new_state + `decoding.decode`):
          api / core shows what the API layer costs;
  hf      transformers `generate` (torch CPU, torch.set_num_threads(N));
  ct2     ctranslate2 (converted from the same checkpoint, float32, intra_threads=N, inter_threads=1);
and the ratios api/hf, api/ct2. At batch 1 greedy it also prints the weight bandwidth each engine
achieves (bytes of the weights one decoding step reads x steps/s) next to the machine's (a large
numpy copy, read + write counted, at the same thread count).

The machine is shared: each repeat runs every engine once, in turn (interleaved), with a pause
between engines so one's spinning threads do not eat into the next; figures are medians of the
repeats. Absolute numbers drift with the load (printed): read the ratios.

--compute-types adds, after the tables, the OPUS-MT rows of our compute types next to CTranslate2's
int8 and float32 (`benchmarks/int8.py`, which prints the same tables alone).

--profile prints, instead, where a step of the core engine spends its time: the wall time inside
each `aiotranslate.ops` function (linear split into the output layer and the rest), per decoding
step, the encoder apart (decoder-only models: the prefill counted in), and what is left: the Python
of the layers and the search. Shares within one run hold under load; absolute times do not.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models as bm  # noqa: E402

NEW_TOKENS = {"opus": 32, "gpt2": 64}
INPUT_TOKENS = {"opus": 25, "gpt2": 32}
DEFAULT_BATCHES = {"opus": [1, 32], "gpt2": [1, 32]}
SEARCHES = {"greedy": 1, "beam4": 4}
SETTLE_S = 0.2
ENGINES = ("api", "core", "hf", "ct2")


class Case:
    """One model at one thread count: the four engines, each a callable running one batch."""

    def __init__(self, name: str, n_threads: int, loop: asyncio.Runner):
        import ctranslate2
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        from aiotranslate import Generator, Translator
        from aiotranslate.api.compute_type import apply
        from aiotranslate.models.registry import load_model

        self.name, self.n_threads, self.loop = name, n_threads, loop
        self.shape = bm.SHAPES[name]
        self.seq2seq = self.shape.kind == "seq2seq"
        path = bm.checkpoint(name)
        engine = Translator if self.seq2seq else Generator
        self.api = engine(path, inter_threads=1, intra_threads=n_threads)
        self.core = apply(load_model(path), "float32")  # the form the API's workers run
        torch.set_num_threads(n_threads)
        auto = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.hf = auto.from_pretrained(path).eval()
        ct2_class = ctranslate2.Translator if self.seq2seq else ctranslate2.Generator
        self.ct2 = ct2_class(str(bm.ctranslate2_model(name)), device="cpu", intra_threads=n_threads, inter_threads=1)

    def close(self) -> None:
        self.api.close()

    def runners(self, batch: int, beam: int) -> dict:
        """engine -> fn() returning the number of new tokens of each row (checked, not timed)."""
        import torch

        from aiotranslate.decoding import DecodingOptions, decode
        from aiotranslate.decoding.search import pad

        n = NEW_TOKENS[self.name]
        inputs = bm.random_ids(self.name, batch, INPUT_TOKENS[self.name])
        names = [[bm.token_name(self.shape, i) for i in row] for row in inputs]
        eos, nt = self.shape.eos, self.n_threads
        tensor = torch.tensor(inputs)

        if self.seq2seq:
            async def api():
                out = await self.api.translate_batch(
                    inputs, beam_size=beam, max_decoding_length=n, min_decoding_length=n
                )
                return [len(r.hypotheses[0]) for r in out]

            def core():
                ids, lengths = pad(inputs)
                state = self.core.encode(ids, lengths, n_threads=nt)
                return decode(self.core, state, [[self.core.decoder_start_token_id]] * batch, options)

            def ct2():
                out = self.ct2.translate_batch(
                    names, beam_size=beam, max_decoding_length=n, min_decoding_length=n
                )
                return [len(r.hypotheses[0]) for r in out]

            hf_prompt = 1  # transformers returns the decoder start token first
        else:
            async def api():
                out = await self.api.generate_batch(
                    inputs, beam_size=beam, max_length=n, min_length=n, include_prompt_in_result=False
                )
                return [len(r.sequences_ids[0]) for r in out]

            def core():
                state = self.core.new_state(batch, nt, capacity=len(inputs[0]) + n)
                return decode(self.core, state, inputs, options)

            def ct2():
                out = self.ct2.generate_batch(
                    names, beam_size=beam, max_length=n, min_length=n, include_prompt_in_result=False
                )
                return [len(r.sequences_ids[0]) for r in out]

            hf_prompt = len(inputs[0])
        options = DecodingOptions(beam_size=beam, max_length=n, min_length=n, end_ids=(eos,), n_threads=nt,
                                  return_prefix=False)

        def hf():
            with torch.inference_mode():
                out = self.hf.generate(tensor, attention_mask=torch.ones_like(tensor), num_beams=beam,
                                       do_sample=False, min_new_tokens=n, max_new_tokens=n,
                                       pad_token_id=self.shape.pad)
            return [out.shape[1] - hf_prompt] * batch

        return {
            "api": lambda: self.loop.run(api()),
            "core": lambda: [len(r.hypotheses[0]) for r in core()],
            "hf": hf,
            "ct2": ct2,
        }


def measure(case: Case, batch: int, beam: int, repeats: int) -> dict[str, float]:
    """tokens/s per engine: median over interleaved repeats."""
    runners = case.runners(batch, beam)
    n = NEW_TOKENS[case.name]
    for engine, fn in runners.items():  # warm-up, and every engine decodes exactly n tokens per row
        lengths = fn()
        if list(lengths) != [n] * batch:
            raise RuntimeError(f"{engine} decoded {sorted(set(lengths))} tokens per row, expected {n}")
    times: dict[str, list[float]] = {e: [] for e in runners}
    for _ in range(repeats):
        for engine, fn in runners.items():
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            fn()
            times[engine].append(time.perf_counter() - start)
    return {e: batch * n / statistics.median(t) for e, t in times.items()}


PROFILED_OPS = ("linear", "attention", "batched_matmul", "softmax", "log_softmax", "logsumexp", "layer_norm", "rms_norm",
                "argmax", "topk", "embedding", "rotary", "activation", "swiglu")


def profile(case: Case, batch: int, beam: int, repeats: int) -> None:
    """Print the time per decoding step of the core engine inside each op (see the module docstring)."""
    from aiotranslate import ops

    core, model = case.runners(batch, beam)["core"], case.core
    core()  # warm-up
    spent: collections.Counter = collections.Counter()
    encoding = [False]

    def timed(name, fn):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if not encoding[0]:
                    output_layer = name == "linear" and args[1].shape[0] == model.vocab_size
                    spent["linear (output layer)" if output_layer else name] += time.perf_counter() - start

        return call

    def encode(*args, **kwargs):
        encoding[0], start = True, time.perf_counter()
        try:
            return original_encode(*args, **kwargs)
        finally:
            encoding[0] = False
            spent["encoder"] += time.perf_counter() - start

    originals = {name: getattr(ops, name) for name in PROFILED_OPS if hasattr(ops, name)}
    original_encode = getattr(model, "encode", None)
    try:  # layers and searches call ops.<name> at call time: swapping the attributes reaches them all
        for name, fn in originals.items():
            setattr(ops, name, timed(name, fn))
        if original_encode is not None:
            model.encode = encode
        start = time.perf_counter()
        for _ in range(repeats):
            core()
        total = time.perf_counter() - start - spent["encoder"]
    finally:
        for name, fn in originals.items():
            setattr(ops, name, fn)
        if original_encode is not None:
            del model.encode  # the instance attribute: the method shows again
    steps = repeats * NEW_TOKENS[case.name]
    print(f"\n## profile: {case.name} batch {batch} beam {beam}, {case.n_threads} thread(s), core engine, "
          f"{1e3 * total / steps:.2f} ms per step ({steps} steps over {repeats} calls); {bm.load_line()}")
    in_ops = 0.0
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        if name != "encoder":
            in_ops += seconds
            print(f"  {name:24} {1e3 * seconds / steps:8.3f} ms {100 * seconds / total:5.1f}%")
    rest = total - in_ops
    print(f"  {'rest (Python)':24} {1e3 * rest / steps:8.3f} ms {100 * rest / total:5.1f}%")
    if spent["encoder"]:
        print(f"  encoder, apart: {1e3 * spent['encoder'] / repeats:.1f} ms per call "
              f"({100 * spent['encoder'] / (total + spent['encoder']):.0f}% of a call)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 repeats, batch 1 and the larger batch, greedy")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", default=list(NEW_TOKENS), choices=list(NEW_TOKENS))
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: per model)")
    parser.add_argument("--search", nargs="+", choices=list(SEARCHES), help="default: greedy beam4 (quick: greedy)")
    parser.add_argument("--repeats", type=int, help="default 5 (quick: 2)")
    parser.add_argument("--profile", action="store_true", help="time per op of the core engine's steps instead")
    parser.add_argument("--compute-types", nargs="+", choices=["float32", "int8", "int8_bfloat16", "bfloat16"],
                        help="also the OPUS-MT rows of these compute types against CTranslate2 (benchmarks/int8.py)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    searches = args.search or (["greedy"] if args.quick else list(SEARCHES))

    import ctranslate2
    import torch
    import transformers

    print(f"# decode benchmark: {bm.load_line()}")
    print(f"# torch {torch.__version__}, transformers {transformers.__version__}, ctranslate2 {ctranslate2.__version__}")
    if not args.profile:
        print(f"# {repeats} interleaved repeats per row, medians; tokens/s = batch x new tokens / s")
    with asyncio.Runner() as loop:
        for name in args.models:
            for n_threads in args.threads:
                case = Case(name, n_threads, loop)
                try:
                    if args.profile:
                        for search in searches:
                            for batch in args.batch or DEFAULT_BATCHES[name]:
                                profile(case, batch, SEARCHES[search], repeats)
                    else:
                        run_case(case, args.batch or DEFAULT_BATCHES[name], searches, repeats)
                finally:
                    case.close()
    if args.compute_types and not args.profile:
        import int8

        print()
        int8.report(args.threads, args.batch or DEFAULT_BATCHES["opus"], searches, repeats, args.compute_types)


def run_case(case: Case, batches: list[int], searches: list[str], repeats: int) -> None:
    name, n_threads = case.name, case.n_threads
    print(f"\n## {name}, {n_threads} thread(s), {INPUT_TOKENS[name]} input tokens -> {NEW_TOKENS[name]} new")
    print(f"{'batch':>5} {'search':>6} | " + " ".join(f"{e:>8}" for e in ENGINES) + f" | {'api/hf':>6} {'api/ct2':>7} {'api/core':>8}")
    for search in searches:
        for batch in batches:
            rate = measure(case, batch, SEARCHES[search], repeats)
            print(f"{batch:>5} {search:>6} | " + " ".join(f"{rate[e]:8.1f}" for e in ENGINES)
                  + f" | {rate['api'] / rate['hf']:6.2f} {rate['api'] / rate['ct2']:7.2f} {rate['api'] / rate['core']:8.2f}",
                  flush=True)
            if batch == 1 and search == "greedy":
                step_bytes = bm.weight_bytes_per_step(case.core)
                machine = bm.memory_bandwidth(n_threads)
                achieved = "  ".join(f"{e} {rate[e] * step_bytes / 1e9:.1f}" for e in ENGINES)
                print(f"      weights/step {step_bytes / 1e6:.0f} MB; GB/s {achieved}; "
                      f"numpy copy {machine / 1e9:.1f} GB/s ({n_threads} thread(s))", flush=True)


if __name__ == "__main__":
    main()
