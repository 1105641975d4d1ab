"""Random-weight checkpoints shared by the decode and concurrency benchmarks, and what every engine
needs to read them.

Two shapes, built with transformers' own config classes and saved with `save_pretrained` (safetensors):
  opus   Marian with the OPUS-MT shape: d_model 512, 6+6 layers, 8 heads, FFN 2048, vocab 32000
  gpt2   GPT-2 small: 12 layers, d 768, 12 heads, vocab 50257
Each is converted once for ctranslate2 (`TransformersConverter`, float32) from the same directory.
Both live under $AIOTRANSLATE_BENCH_CACHE (default ~/.cache/aiotranslate/benchmarks) and are reused
between runs; delete the folder to rebuild. Random weights decode random tokens: every engine is run
with min length = max length so that all of them decode the same number of tokens.

Also here, because both benchmarks need them: a steady clock helper (`median_time`), the machine's
load and its memory bandwidth (a large numpy copy).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("AIOTRANSLATE_BENCH_CACHE", Path.home() / ".cache/aiotranslate/benchmarks"))
SEED = 0


@dataclass(frozen=True)
class Shape:
    name: str
    kind: str  # "seq2seq" | "decoder"
    vocab: int
    eos: int  # excluded from the random inputs
    pad: int


SHAPES = {
    "opus": Shape("opus", "seq2seq", 32000, eos=0, pad=31999),
    "gpt2": Shape("gpt2", "decoder", 50257, eos=50256, pad=50256),
}


def _config(shape: Shape):
    if shape.name == "opus":
        from transformers import MarianConfig

        # OPUS-MT's own config values (swish, scaled embeddings, one shared table, pad = V - 1).
        return MarianConfig(
            vocab_size=shape.vocab, decoder_vocab_size=shape.vocab, d_model=512,
            encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
            encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=512,
            activation_function="swish", scale_embedding=True, share_encoder_decoder_embeddings=True,
            pad_token_id=shape.pad, eos_token_id=shape.eos, decoder_start_token_id=shape.pad,
            forced_eos_token_id=shape.eos,
        )
    from transformers import GPT2Config

    return GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=shape.vocab,
                      bos_token_id=shape.eos, eos_token_id=shape.eos)


def checkpoint(name: str) -> Path:
    """The saved transformers checkpoint of shape `name`, built on first use."""
    shape = SHAPES[name]
    path = CACHE / name / "hf"
    if (path / "model.safetensors").exists():
        return path
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    torch.manual_seed(SEED)
    auto = AutoModelForSeq2SeqLM if shape.kind == "seq2seq" else AutoModelForCausalLM
    model = auto.from_config(_config(shape))
    tmp = path.with_name("hf.partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tmp.rename(path)  # a run killed while saving leaves no half checkpoint behind
    return path


class VocabularyOnly:
    """What ctranslate2's converter reads from a tokenizer, for a checkpoint that ships none: token
    i is named names[i]; eos (also the BOS) and pad are ids."""

    def __init__(self, names: list[str], eos: int, pad: int):
        self.names = names
        self.eos_token = self.bos_token = names[eos]
        self.pad_token = names[pad]
        self.unk_token = "<unk>"
        self.special_tokens_map: dict = {}

    def get_vocab(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def convert_ids_to_tokens(self, i):
        return self.names[i]


def token_name(shape: Shape, i: int) -> str:
    """The token string ctranslate2 knows id i by."""
    special = {shape.eos: "</s>" if shape.kind == "seq2seq" else "<|endoftext|>", shape.pad: "<pad>", 1: "<unk>"}
    return special.get(i, f"t{i}")


def ctranslate2_model(name: str) -> Path:
    """The ctranslate2 conversion (float32) of the same checkpoint."""
    path = CACHE / name / "ct2"
    if (path / "model.bin").exists():
        return path
    import ctranslate2

    class Converter(ctranslate2.converters.TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            shape = SHAPES[name]
            return VocabularyOnly([token_name(shape, i) for i in range(shape.vocab)], shape.eos, shape.pad)

    tmp = path.with_name("ct2.partial")
    Converter(str(checkpoint(name))).convert(str(tmp), force=True)
    tmp.rename(path)
    return path


def random_ids(name: str, batch: int, length: int, seed: int = SEED) -> list[list[int]]:
    """batch rows of random token ids, none of them special (eos/pad); seq2seq sources end with eos."""
    shape = SHAPES[name]
    rng = np.random.default_rng(seed)
    rows = rng.integers(2, shape.vocab - 2, size=(batch, length)).tolist()
    if shape.kind == "seq2seq":
        rows = [r[:-1] + [shape.eos] for r in rows]
    return rows


def median_time(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls of fn() (after one call left out as a warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def weight_bytes_per_step(model) -> int:
    """Bytes of the weights one batch-1 decoding step reads, in the model's compute form: every linear
    of the decoder layers (not the cross-attention K/V projections: those run once per source) and
    the output layer."""
    if hasattr(model, "decoder_layers"):
        linears = [
            lin
            for layer in model.decoder_layers
            for lin in (layer.self_attention.qkv, layer.self_attention.out, layer.cross_attention.q,
                        layer.cross_attention.out, layer.ffn.up, layer.ffn.down)
        ]  # fmt: skip
    else:
        linears = [lin for layer in model.layers for lin in (layer.attention.qkv, layer.attention.out)]
        linears += [lin for layer in model.layers for lin in vars(layer.ffn).values() if hasattr(lin, "out_features")]
    return sum(lin.weight.nbytes + (0 if lin.bias is None else lin.bias.nbytes) for lin in linears + [model.lm_head])


def memory_bandwidth(n_threads: int, size_mb: int = 256) -> float:
    """Bytes/s of a large numpy copy (read + write counted), a floor on what DRAM streams.
    numpy's copy is single-threaded: with 2 threads, two copies run side by side."""
    from concurrent.futures import ThreadPoolExecutor

    n = size_mb * 2**20 // 4
    src = [np.ones(n, dtype=np.float32) for _ in range(n_threads)]
    dst = [np.empty_like(s) for s in src]
    with ThreadPoolExecutor(n_threads) as pool:
        seconds = median_time(lambda: list(pool.map(np.copyto, dst, src)), 5)
    return 2 * n * 4 * n_threads / seconds


def load_line() -> str:
    load = os.getloadavg()
    return f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores"
