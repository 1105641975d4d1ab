"""Read a model directory's `config.json` and `generation_config.json` (Hugging Face formats).

What it is: `HFConfig`, a read-only view of config.json whose accessors raise `ModelLoadError` naming
the file and the key; `rope_parameters` normalising the old (`rope_theta` + `rope_scaling`) and new
(`rope_parameters`) spellings of rotary settings; `GenerationConfig`, the decoding defaults of
generation_config.json, falling back to config.json for the special token ids and the banned words.

What it is not: it knows no architecture beyond these shared conventions; each loader picks its keys
and defaults (`models/gpt2.py`, `models/llama.py`, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

CONFIG_FILE = "config.json"
GENERATION_FILE = "generation_config.json"

_MISSING = object()


def _read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read: {e}") from e
    except ValueError as e:
        raise ModelLoadError(f"{path}: invalid JSON: {e}") from e
    if not isinstance(values, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return values


class HFConfig:
    """config.json of a model directory; `defaults` stand in for keys the file leaves out."""

    def __init__(self, values: dict, path: Path, defaults: dict | None = None):
        self.values = values
        self.path = path
        self.defaults = defaults or {}

    @classmethod
    def read(cls, directory: str | Path) -> HFConfig:
        path = Path(directory) / CONFIG_FILE
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing (a model directory needs config.json)")
        return cls(_read_json(path), path)

    def with_defaults(self, defaults: dict) -> HFConfig:
        """The same file seen through an architecture's defaults (those of its transformers config class)."""
        return HFConfig(self.values, self.path, {**self.defaults, **defaults})

    @property
    def model_type(self) -> str:
        return self.get("model_type", str)

    def __contains__(self, key: str) -> bool:
        return self.values.get(key) is not None

    def get(self, key: str, kind: type | tuple[type, ...] = object, default: Any = _MISSING) -> Any:
        """config[key], else the architecture default, else `default`; checked to be of `kind`.

        An explicit null is kept (transformers reads it as "unset", e.g. no sliding window) and is an
        error only when the caller gives no default, i.e. needs a value."""
        value = self.values[key] if key in self.values else self.defaults.get(key, default)
        if value is _MISSING or (value is None and default is _MISSING):
            raise ModelLoadError(f"{self.path}: missing key {key!r}")
        if value is not None and not _is_kind(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ModelLoadError(f"{self.path}: key {key!r} should be {names}, got {value!r}")
        return value

    def positive(self, key: str, default: Any = _MISSING) -> int:
        value = self.get(key, int, default)
        if value is not None and value <= 0:
            raise ModelLoadError(f"{self.path}: key {key!r} must be a positive integer, got {value}")
        return value

    def error(self, message: str) -> ModelLoadError:
        return ModelLoadError(f"{self.path}: {message}")


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds and object not in kinds:
        return False  # JSON true is not an int
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def rope_parameters(config: HFConfig) -> dict:
    """The rotary settings as one flat dict with `rope_type` and `rope_theta` always present.

    Accepts transformers >= 5 `rope_parameters` and the older top-level `rope_theta` with a
    `rope_scaling` dict (whose type key was `type` before `rope_type`). For llama3/yarn/longrope the
    pretraining length `original_max_position_embeddings` defaults to `max_position_embeddings`,
    a top-level value taking priority (as transformers does for Phi-3)."""
    raw = config.get("rope_parameters", dict, None) or config.get("rope_scaling", dict, None) or {}
    params = dict(raw)
    params["rope_type"] = raw.get("rope_type", raw.get("type", "default"))
    params.pop("type", None)
    params.setdefault("rope_theta", config.get("rope_theta", (int, float), 10000.0))
    if "partial_rotary_factor" in config:
        params.setdefault("partial_rotary_factor", config.get("partial_rotary_factor", (int, float)))
    if params["rope_type"] in ("llama3", "yarn", "longrope"):
        if "original_max_position_embeddings" in config:
            params["original_max_position_embeddings"] = config.get("original_max_position_embeddings", int)
        else:
            params.setdefault("original_max_position_embeddings", config.get("max_position_embeddings", int))
    return params


def _token_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def _bad_words(value: Any, path: Path) -> tuple[tuple[int, ...], ...]:
    """transformers' `bad_words_ids`: a list of token id sequences the model must never generate."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(s, list) and s and all(isinstance(i, int) and not isinstance(i, bool) for i in s) for s in value
    ):
        raise ModelLoadError(f"{path}: bad_words_ids must be a list of non-empty lists of token ids, got {value!r}")
    return tuple(tuple(s) for s in value)


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding defaults a model directory ships with (transformers' defaults where absent)."""

    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    decoder_start_token_id: int | None = None
    max_length: int = 20
    max_new_tokens: int | None = None
    min_length: int = 0
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    bad_words_ids: tuple[tuple[int, ...], ...] = ()  # never generated (OPUS-MT: its pad token, which starts decoding)
    other: dict = field(default_factory=dict)  # every other key of generation_config.json, as read

    @classmethod
    def read(cls, directory: str | Path, config: HFConfig | None = None) -> GenerationConfig:
        """generation_config.json of `directory` if present; token ids fall back to config.json."""
        path = Path(directory) / GENERATION_FILE
        values = _read_json(path) if path.is_file() else {}
        fallback = config.values if config is not None else {}
        kwargs: dict[str, Any] = {}
        for key in ("bos_token_id", "pad_token_id", "decoder_start_token_id"):
            kwargs[key] = values.get(key, fallback.get(key))
        kwargs["eos_token_ids"] = _token_ids(values.get("eos_token_id", fallback.get("eos_token_id")))
        # OPUS-MT checkpoints keep it in config.json, which transformers also reads it from.
        source = path if "bad_words_ids" in values else Path(directory) / CONFIG_FILE
        kwargs["bad_words_ids"] = _bad_words(values.get("bad_words_ids", fallback.get("bad_words_ids")), source)
        known = {f for f in cls.__dataclass_fields__ if f not in ("eos_token_ids", "bad_words_ids", "other")}
        for key in known - set(kwargs):
            if values.get(key) is not None:
                kwargs[key] = values[key]
        other = {k: v for k, v in values.items() if k not in known and k not in ("eos_token_id", "bad_words_ids")}
        return cls(**kwargs, other=other)
