"""Tiny random-weight Hugging Face models written to a directory, and helpers comparing aiotranslate's
logits with transformers' on the same inputs. No downloads: every model is built from a config here.

Reusable by any test (decoding, runtime): `tiny_gpt2(path)`, `tiny_llama(path, model_type=...)` save a
model and return the transformers module (eval mode, float32) to compare against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import transformers

# Small but awkward sizes: 3 heads, a vocabulary that is not a multiple of 8.
VOCAB = 61

CONFIGS = {
    "gpt2": transformers.GPT2Config,
    "llama": transformers.LlamaConfig,
    "mistral": transformers.MistralConfig,
    "qwen2": transformers.Qwen2Config,
    "qwen3": transformers.Qwen3Config,
}


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.3) -> None:
    """Replace the default init (tiny weights, unit norms, zero biases) by weights that make every
    tensor matter: attention far from uniform, norms and biases away from 1 and 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            is_norm = "norm" in name or ".ln_" in name
            if is_norm and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(std * noise)


def save(model: torch.nn.Module, directory: Path, **kwargs) -> Path:
    model.save_pretrained(directory, safe_serialization=True, **kwargs)
    return Path(directory)


def tiny_gpt2(directory: Path, *, seed: int = 0, **overrides) -> torch.nn.Module:
    values = dict(n_embd=24, n_layer=2, n_head=3, vocab_size=VOCAB, n_positions=32, bos_token_id=1, eos_token_id=2)
    values.update(overrides)
    return _build(transformers.GPT2Config(**values), transformers.GPT2LMHeadModel, directory, seed)


def tiny_llama(directory: Path, model_type: str = "llama", *, seed: int = 0, **overrides) -> torch.nn.Module:
    """Llama-family model: 6 query heads of 4 over 2 KV heads (GQA ratio 3) unless overridden."""
    values = dict(
        hidden_size=24,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=32,
        bos_token_id=1,
        eos_token_id=2,
    )
    values.update(overrides)
    config = CONFIGS[model_type](**values)
    return _build(config, transformers.AutoModelForCausalLM.from_config, directory, seed)


def _build(config, factory, directory: Path, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = factory(config).eval()
    randomize(model, seed)
    save(model, directory)
    return model
