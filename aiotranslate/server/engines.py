"""The models a server serves: their names, the engine that runs each, opening and closing them.

A model is given as `PATH` or `NAME=PATH`; PATH is anything the engines load (a model directory, a
bundled name such as "en-pt", a GGUF file). Its task follows from what it is: an encoder-decoder
(Bergamot included) translates, an encoder-only model embeds, anything else generates.

Loading reads and converts weights for seconds: it runs in a helper thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..api import Encoder, Generator, Translator
from ..api.engine import Engine
from ..convert import HFConfig
from ..convert.bergamot import is_bergamot_dir, resolve_model_path

Task = Literal["translation", "generation", "embedding"]

# Model types of config.json by engine (models/registry.py loads them); the others are decoder-only.
ENCODER_DECODER_TYPES = frozenset({"marian", "bart", "mbart", "m2m_100"})
ENCODER_ONLY_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "distilbert"})
ENGINES: dict[Task, type[Engine]] = {"translation": Translator, "generation": Generator, "embedding": Encoder}


@dataclass
class ServedModel:
    name: str
    path: str
    task: Task
    engine: Engine
    created: int = field(default_factory=lambda: int(time.time()))


def parse_spec(spec: str) -> tuple[str, str]:
    """"NAME=PATH" -> (NAME, PATH); "PATH" -> (its last component, PATH): "en-pt", "opus-mt-en-de"."""
    name, sep, path = spec.partition("=")
    if not sep:
        path = spec
        name = Path(spec.rstrip("/")).name or spec
    if not name or not path:
        raise ValueError(f"model {spec!r}: expected PATH or NAME=PATH")
    return name, path


def model_task(path: str) -> Task:
    """What the model at `path` does, from its files (without loading its weights)."""
    directory = resolve_model_path(path)
    if is_bergamot_dir(directory):
        return "translation"
    if not (directory / "config.json").is_file():
        return "generation"  # a GGUF file or name; the Generator says what it cannot load
    model_type = HFConfig.read(directory).get("model_type", str)
    if model_type in ENCODER_DECODER_TYPES:
        return "translation"
    return "embedding" if model_type in ENCODER_ONLY_TYPES else "generation"


async def open_models(specs: list[str], **engine_options) -> dict[str, ServedModel]:
    """Load every model (one at a time, each in a helper thread); close those loaded if one fails."""
    models: dict[str, ServedModel] = {}
    try:
        for spec in specs:
            name, path = parse_spec(spec)
            if name in models:
                raise ValueError(f"two models are named {name!r}; name them with NAME=PATH")
            task = model_task(path)
            engine = await asyncio.to_thread(ENGINES[task], path, **engine_options)
            models[name] = ServedModel(name, path, task, engine)
    except BaseException:
        await close_models(models)
        raise
    return models


async def close_models(models: dict[str, ServedModel]) -> None:
    """Cancel what is still queued or running and join the workers."""
    for model in models.values():
        await model.engine.aclose(cancel=True)
