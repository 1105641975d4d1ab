"""Tiny GGUF files written here, the way llama.cpp's `convert_hf_to_gguf.py` writes a Llama: a random
transformers LlamaForCausalLM (hf_fixtures) and a byte-level BPE tokenizer trained here go through
`gguf.GGUFWriter` with llama.cpp's metadata keys and tensor names, q/k rows permuted for its rotary,
weights in the ggml types asked for.

Quantized weights lose precision; the transformers model gets the same loss (each weight replaced by
its quantized-then-dequantized value, by gguf's reference code), so logits still compare at float32
tolerance. Blocks run along rows, so quantizing commutes with the q/k row permutation.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch
from hf_fixtures import tiny_llama
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXTS = [
    "The small green frog sat on an old stone near the river.",
    "What is the capital of France? Paris, since 987 or so.",
    "Tom asked his teacher for advice: café, naïve, Köln, 東京!",
    "It's 42 degrees today, isn't it?  Tabs\tand\nnew lines.",
]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
HF_TO_GGUF = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def train_tokenizer() -> Tokenizer:
    """Byte-level BPE over the 256 byte symbols, with ChatML-style control tokens first (ids 0-2)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=330, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS * 20, trainer)
    return tok


def gguf_name(hf_name: str) -> str:
    stem, kind = hf_name.rsplit(".", 1)
    top = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    if stem in top:
        return f"{top[stem]}.{kind}"
    _, _, layer, part = stem.split(".", 3)
    return f"blk.{layer}.{HF_TO_GGUF[part]}.{kind}"


def permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's q/k permutation (LlamaModel.permute): rows (head, half, i) -> (head, i, half)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(
    directory: Path,
    *,
    types: dict[str, str] | None = None,
    rope_linear: float | None = None,
    add_bos: bool = False,
    extra_tensors: dict[str, np.ndarray] | None = None,
    **llama,
) -> tuple[Path, torch.nn.Module, Tokenizer]:
    """model.gguf in `directory` from a random tiny Llama (hf_fixtures.tiny_llama overrides in
    `llama`); `types` maps a GGUF tensor-name part ("attn_q", "token_embd", ...) to a ggml type name
    (F32 otherwise). Returns the file, the transformers model holding the same weights, the tokenizer."""
    tokenizer = train_tokenizer()
    vocab = tokenizer.get_vocab_size()
    rope = {"rope_parameters": {"rope_type": "linear", "factor": rope_linear, "rope_theta": 500.0}} if rope_linear else {}
    hf = tiny_llama(directory / "hf", vocab_size=vocab, bos_token_id=0, eos_token_id=2, **rope, **llama)
    cfg = hf.config
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    if rope_linear:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_linear)
    vocab_map = tokenizer.get_vocab()
    tokens = sorted(vocab_map, key=vocab_map.get)
    merges = [" ".join(pair) for pair in json.loads(tokenizer.to_str())["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    w.add_add_bos_token(add_bos)
    w.add_chat_template(CHAT_TEMPLATE)

    types = types or {}
    heads = {"attn_q": cfg.num_attention_heads, "attn_k": cfg.num_key_value_heads}
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if name == "lm_head.weight" and cfg.tie_word_embeddings:
                continue
            target = gguf_name(name)
            part = target.split(".")[-2]
            qtype = gguf.GGMLQuantizationType[types.get(part, "F32")]
            value = param.numpy().astype(np.float32)
            stored = permute(value, heads[part]) if part in heads else value
            w.add_tensor(target, gguf.quants.quantize(stored, qtype), raw_dtype=qtype)
            lossy = gguf.quants.dequantize(gguf.quants.quantize(value, qtype), qtype)
            param.copy_(torch.from_numpy(np.ascontiguousarray(lossy, dtype=np.float32)))
    for name, value in (extra_tensors or {}).items():
        w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, hf, tokenizer

