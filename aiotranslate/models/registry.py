"""`load_model(path)`: read a model directory's config.json and hand it to the loader of its
`model_type`; a GGUF file (or a directory holding one, or "smollm2") goes to the Llama loader
through `convert.gguf`.

`LOADERS` maps each supported `model_type` to "module:function" (relative to this package), imported
on first use. To add an architecture, add one line; the loader is called as
`load(directory: Path, config: HFConfig) -> model` and raises ModelLoadError for what it cannot read.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..convert import HFConfig
from ..convert.bergamot import is_bergamot_dir, resolve_model_path
from ..convert.gguf import find_gguf
from ..errors import ModelLoadError

LOADERS: dict[str, str] = {
    "gpt2": ".gpt2:load",
    "llama": ".llama:load",
    "mistral": ".llama:load",
    "qwen2": ".llama:load",
    "qwen3": ".llama:load",
    "marian": ".bart:load",
    "bart": ".bart:load",
    "mbart": ".bart:load",
    "m2m_100": ".bart:load",
    "bert": ".bert:load",
    "roberta": ".bert:load",
    "xlm-roberta": ".bert:load",
    "distilbert": ".bert:load",
}


def supported_model_types() -> list[str]:
    return sorted(LOADERS)


def contains_model(path: str | Path) -> bool:
    """Whether `path` names a model that `load_model` reads (CTranslate2's `contains_model`): a GGUF
    file, a Bergamot directory, or a directory whose config.json names a supported model_type. No
    weights are read."""
    try:
        if find_gguf(path) is not None:
            return True
        directory = resolve_model_path(path)
        if is_bergamot_dir(directory):
            return True
        return directory.is_dir() and HFConfig.read(directory).values.get("model_type") in LOADERS
    except (ModelLoadError, OSError, TypeError, ValueError):  # TypeError: a model_type that is no string
        return False


def load_model(path: str | Path):
    """The model stored in directory `path` (config.json + safetensors weights), ready to decode."""
    gguf_file = find_gguf(path)  # also "smollm2"
    if gguf_file is not None:
        return _load_gguf(gguf_file)
    directory = resolve_model_path(path)  # also a bundled name: "en-pt", "pt-en"
    if is_bergamot_dir(directory):  # Marian C++ binary model (model.*.bin), no config.json
        return importlib.import_module(".bergamot", __package__).load(directory)
    if not directory.is_dir():
        raise ModelLoadError(f"{directory}: not a directory (a model is a directory with config.json)")
    config = HFConfig.read(directory)
    model_type = config.get("model_type", str)
    if model_type not in LOADERS:
        raise ModelLoadError(
            f"{config.path}: model_type {model_type!r} is not supported; "
            f"supported: {', '.join(supported_model_types())}"
        )
    module, function = LOADERS[model_type].split(":")
    return getattr(importlib.import_module(module, __package__), function)(directory, config)


def _load_gguf(path: Path):
    from ..convert import gguf
    from .llama import build

    file = gguf.GGUFFile.open(path)
    config = gguf.llama_config(file)
    model = build(config, gguf.GGUFCheckpoint(file, config), gguf.generation_config(file))
    model.stored_compute_type = gguf.stored_compute_type(file)
    return model
