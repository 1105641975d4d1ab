"""Loading a model for an engine: the network, its tokenizer, and the ids it decodes with.

Kept apart from the engines so `unload_model()` / `load_model()` and the constructors share one path.
With tensor_parallel=True (under `mpiexec`), every rank loads its shard; rank 0 gets a model whose
calls run on every rank, and the other ranks serve it from here until rank 0 closes its engine, then
exit (SystemExit(0)): the constructor does not return on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..convert.bergamot import resolve_model_path  # also the bundled names ("en-pt")
from ..errors import ModelLoadError
from ..models.registry import load_model
from ..runtime.mpi_driver import Group, open_group
from ..tokenizers import Tokenizer, load_tokenizer
from .inputs import SpecialIds

FLOAT32_COMPUTE_TYPES = ("default", "auto", "float32")


def open_model(
    model_path: str | Path, device: str, compute_type: str, tensor_parallel: bool, inter_threads: int = 1
) -> LoadedModel:
    """Check the constructor's device arguments, then load the model once for every worker."""
    check_device(device, compute_type)
    if not tensor_parallel:
        return load(model_path)
    if inter_threads < 1:
        raise ValueError(f"inter_threads must be >= 1, got {inter_threads}")
    group = open_group(lambda: load_model(model_path), inter_threads)
    if not group.is_leader:
        group.serve()
        raise SystemExit(0)
    return finish(group.model, model_path, group)


def check_device(device: str, compute_type: str) -> None:
    """What this build runs: the CPU in float32 (int8/bf16 compute and the CUDA path are not wired
    into the engines yet: refuse them clearly rather than silently computing something else)."""
    if device not in ("cpu", "auto"):
        raise ValueError(f"device {device!r} is not supported by the engines yet; use device='cpu'")
    if compute_type not in FLOAT32_COMPUTE_TYPES:
        raise ValueError(
            f"compute_type {compute_type!r} is not supported yet; use one of {FLOAT32_COMPUTE_TYPES}"
        )


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Tokenizer | None
    special: SpecialIds
    path: str
    parallel: Group | None = None  # the tensor-parallel group this rank leads


def load(model_path: str | Path) -> LoadedModel:
    return finish(load_model(model_path), model_path)


def finish(model: Any, model_path: str | Path, parallel: Group | None = None) -> LoadedModel:
    """The loaded model with its tokenizer and special ids."""
    try:
        tokenizer = load_tokenizer(resolve_model_path(model_path))
    except ModelLoadError:
        tokenizer = None  # token ids still work; text and token strings get a clear error
    return LoadedModel(model, tokenizer, special_ids(model, tokenizer), str(model_path), parallel)


def special_ids(model: Any, tokenizer: Tokenizer | None) -> SpecialIds:
    generation = getattr(model, "generation_config", None)
    end = tuple(generation.eos_token_ids) if generation is not None and generation.eos_token_ids else ()
    if not end and getattr(model, "eos_token_id", None) is not None:
        end = (model.eos_token_id,)
    if not end and tokenizer is not None and tokenizer.eos_id is not None:
        end = (tokenizer.eos_id,)
    start = getattr(model, "decoder_start_token_id", None)
    return SpecialIds(
        start=start,
        end=end,
        forced_first=getattr(model, "forced_bos_token_id", None),
        unk=None if tokenizer is None else tokenizer.unk_id,
    )
