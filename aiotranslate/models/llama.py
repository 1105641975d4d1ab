"""The Llama family (`model_type`: llama, mistral, qwen2, qwen3): transformers' *ForCausalLM weight names
and config keys mapped onto `DecoderOnlyModel`.

Shared facts: RMSNorm pre-norm blocks, rotary positions (`rope_parameters`, or the older `rope_theta`
+ `rope_scaling`: default, linear, dynamic, llama3, yarn), SwiGLU feed-forward, grouped-query
attention with `num_key_value_heads` and `head_dim` (default hidden_size / heads), scale
head_dim^-0.5, LM head tied to the embeddings only if `tie_word_embeddings`. q/k/v and gate/up are
fused at load (one GEMM each), which copies those weights; the others stay views of the file.
Per type (`FAMILIES`): which projections carry a bias (a constant or the config key saying so),
Qwen3's RMS norm of every query and key head, and sliding-window attention (Mistral: every layer;
Qwen2/3: the layers `layer_types` marks, when `use_sliding_window`).
"""

from __future__ import annotations

from pathlib import Path

from ..convert import Checkpoint, GenerationConfig, HFConfig, rope_parameters
from ..layers import Embedding, GatedFeedForward, Linear, RMSNorm, Rotary, SelfAttention
from .decoder_only import DecoderLayer, DecoderOnlyModel

# Defaults of transformers' config classes for keys a config.json may leave out.
DEFAULTS = {
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
}

FAMILIES = {
    "llama": {"qkv_bias": "attention_bias", "o_bias": "attention_bias", "mlp_bias": "mlp_bias", "qk_norm": False},
    "mistral": {"qkv_bias": False, "o_bias": False, "mlp_bias": False, "qk_norm": False},
    "qwen2": {"qkv_bias": True, "o_bias": False, "mlp_bias": False, "qk_norm": False},
    "qwen3": {"qkv_bias": "attention_bias", "o_bias": "attention_bias", "mlp_bias": False, "qk_norm": True},
}
TYPE_DEFAULTS = {
    "mistral": {"sliding_window": 4096},
    "qwen2": {"use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28},
    "qwen3": {"use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28, "head_dim": 128},
}


def _windows(cfg: HFConfig, n_layers: int) -> list[int | None]:
    """The sliding window of each layer, None for full attention."""
    if cfg.model_type == "mistral":
        return [cfg.positive("sliding_window", None)] * n_layers
    if cfg.model_type not in ("qwen2", "qwen3"):
        return [None] * n_layers
    window = cfg.positive("sliding_window", None) if cfg.get("use_sliding_window", bool) else None
    types = cfg.get("layer_types", list, None)
    if types is None:
        first = cfg.get("max_window_layers", int)
        types = ["sliding_attention" if window and i >= first else "full_attention" for i in range(n_layers)]
    if len(types) != n_layers:
        raise cfg.error(f"layer_types has {len(types)} entries for {n_layers} layers")
    return [window if kind == "sliding_attention" else None for kind in types]


def _rotary(cfg: HFConfig, head_dim: int) -> Rotary:
    params = rope_parameters(cfg)
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise cfg.error("partial_rotary_factor is not supported for this architecture")
    try:
        return Rotary(params, head_dim, cfg.positive("max_position_embeddings"))
    except (ValueError, KeyError, TypeError) as e:
        raise cfg.error(f"rope parameters {params}: {e}") from e


def load(directory: Path, config: HFConfig) -> DecoderOnlyModel:
    return build(config, Checkpoint(directory), GenerationConfig.read(directory, config))


def build(config: HFConfig, ckpt, generation_config: GenerationConfig) -> DecoderOnlyModel:
    """The model from its config and a weight source read by transformers' names: a `Checkpoint`, or
    any object with its interface (`convert.gguf.GGUFCheckpoint`)."""
    family = FAMILIES[config.model_type]
    cfg = config.with_defaults({**DEFAULTS, **TYPE_DEFAULTS.get(config.model_type, {})})
    c, n_layers, vocab = cfg.positive("hidden_size"), cfg.positive("num_hidden_layers"), cfg.positive("vocab_size")
    n_heads = cfg.positive("num_attention_heads")
    n_kv = cfg.positive("num_key_value_heads", None) or n_heads
    d = cfg.positive("head_dim", None) or c // n_heads
    f = cfg.positive("intermediate_size")
    eps = cfg.get("rms_norm_eps", float)
    if n_heads % n_kv:
        raise cfg.error(f"num_attention_heads={n_heads} is not a multiple of num_key_value_heads={n_kv}")
    if cfg.get("hidden_act", str) not in ("silu", "swish"):
        raise cfg.error(f"hidden_act {cfg.get('hidden_act')!r} is not supported (SwiGLU needs silu)")
    biases = {k: cfg.get(v, bool) if isinstance(v, str) else v for k, v in family.items() if k.endswith("bias")}
    rotary = _rotary(cfg, d)
    windows = _windows(cfg, n_layers)

    # A weight source may also hand over weights it stores in int8 (GGUF Q8_0) as they are.
    int8_of = getattr(ckpt, "get_int8", lambda name: None)

    def linear(name: str, n_out: int, n_in: int, has_bias: bool) -> Linear:
        bias = ckpt.get(f"{name}.bias", (n_out,)) if has_bias else None
        return Linear(ckpt.get(f"{name}.weight", (n_out, n_in)), bias, int8=int8_of(f"{name}.weight"))

    def rms_norm(name: str, dim: int) -> RMSNorm:
        return RMSNorm(ckpt.get(f"{name}.weight", (dim,)), eps)

    layers = []
    for i in range(n_layers):
        p = f"model.layers.{i}"
        qkv = Linear.fuse(
            [
                linear(f"{p}.self_attn.q_proj", n_heads * d, c, biases["qkv_bias"]),
                linear(f"{p}.self_attn.k_proj", n_kv * d, c, biases["qkv_bias"]),
                linear(f"{p}.self_attn.v_proj", n_kv * d, c, biases["qkv_bias"]),
            ]
        )
        attention = SelfAttention(
            qkv,
            linear(f"{p}.self_attn.o_proj", c, n_heads * d, biases["o_bias"]),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            head_dim=d,
            rotary=rotary,
            q_norm=rms_norm(f"{p}.self_attn.q_norm", d) if family["qk_norm"] else None,
            k_norm=rms_norm(f"{p}.self_attn.k_norm", d) if family["qk_norm"] else None,
            window=windows[i],
        )
        gate_up = Linear.fuse(
            [linear(f"{p}.mlp.gate_proj", f, c, biases["mlp_bias"]), linear(f"{p}.mlp.up_proj", f, c, biases["mlp_bias"])]
        )
        ffn = GatedFeedForward(gate_up, linear(f"{p}.mlp.down_proj", c, f, biases["mlp_bias"]))
        norm1, norm2 = rms_norm(f"{p}.input_layernorm", c), rms_norm(f"{p}.post_attention_layernorm", c)
        layers.append(DecoderLayer(norm1, attention, norm2, ffn))

    embedding_name = "model.embed_tokens.weight"
    embedding = Embedding(ckpt.get(embedding_name, (vocab, c)))
    tied = cfg.get("tie_word_embeddings", bool)
    model = DecoderOnlyModel(
        embedding=embedding,
        layers=layers,
        final_norm=rms_norm("model.norm", c),
        lm_head=Linear(embedding.table, int8=int8_of(embedding_name)) if tied else linear("lm_head", vocab, c, False),
        config=config,
        generation_config=generation_config,
        int8_weights="int8_weight_only",  # activation outliers: layers/quantized.py has the measurements
    )
    ckpt.check_all_read(ignore=("*.rotary_emb.inv_freq", "lm_head.weight"))
    return model
