"""Loading a model for an engine: the network, its tokenizer, and the ids it decodes with.

Kept apart from the engines so `unload_model()` / `load_model()` and the constructors share one path.
With tensor_parallel=True (under `mpiexec`), every rank loads its shard; rank 0 gets a model whose
calls run on every rank, and the other ranks serve it from here until rank 0 closes its engine, then
exit (SystemExit(0)): the constructor does not return on them.
The compute type is resolved against the model and the CPU (`compute_type.resolve`) and applied to
the loaded model once, before any worker shares it; tensor parallelism shards float32 layers only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..convert.bergamot import resolve_model_path  # also the bundled names ("en-pt")
from ..errors import ModelLoadError
from ..models.registry import load_model
from ..runtime.mpi_driver import Group, open_group
from ..tokenizers import Tokenizer, load_tokenizer
from . import compute_type as compute
from .inputs import SpecialIds


def open_model(
    model_path: str | Path,
    device: str,
    compute_type: str | Mapping[str, str],
    tensor_parallel: bool,
    inter_threads: int = 1,
) -> LoadedModel:
    """Check the constructor's device arguments, then load the model once for every worker."""
    compute.resolve(compute_type, device)  # the device and the name, checked before any loading
    if not tensor_parallel:
        return load(model_path, compute_type)
    if inter_threads < 1:
        raise ValueError(f"inter_threads must be >= 1, got {inter_threads}")
    if compute.resolve(compute_type, device) != "float32":
        raise ValueError(f"tensor_parallel=True runs float32 layers only, not compute_type {compute_type!r}")
    group = open_group(lambda: load_model(model_path), inter_threads)
    if not group.is_leader:
        group.serve()
        raise SystemExit(0)
    return finish(group.model, model_path, "float32", group)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Tokenizer | None
    special: SpecialIds
    path: str
    compute_type: str  # the effective one: float32, int8_float32, int8_bfloat16 or bfloat16
    parallel: Group | None = None  # the tensor-parallel group this rank leads


def load(model_path: str | Path, compute_type: str | Mapping[str, str] = "default") -> LoadedModel:
    model = load_model(model_path)
    effective = compute.resolve(compute_type, "cpu", getattr(model, "stored_compute_type", "float32"))
    return finish(compute.apply(model, effective), model_path, effective)


def finish(model: Any, model_path: str | Path, compute_type: str, parallel: Group | None = None) -> LoadedModel:
    """The loaded model with its tokenizer and special ids."""
    try:
        tokenizer = load_tokenizer(resolve_model_path(model_path))
    except ModelLoadError:
        tokenizer = None  # token ids still work; text and token strings get a clear error
    special = special_ids(model, tokenizer)
    return LoadedModel(model, tokenizer, special, str(model_path), compute_type, parallel)


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
