"""Loading a model for an engine: the network, its tokenizer, and the ids it decodes with.

Kept apart from the engines so `unload_model()` / `load_model()` and the constructors share one path.
With tensor_parallel=True (under `mpiexec`), every rank loads its shard; rank 0 gets a model whose
calls run on every rank, and the other ranks serve it from here until rank 0 closes its engine, then
exit (SystemExit(0)): the constructor does not return on them.
The compute type is resolved against the model and the CPU (`compute_type.resolve`) and applied to
the loaded model once, before any worker shares it; tensor parallelism shards float32 layers only.
On CUDA (`device="cuda"`, or "auto" with a GPU), the model is loaded once on the host and copied
once to each listed GPU (`models.device.to_device`, float32, float16 or bfloat16 weights): the workers of a
GPU share its copy, and `LoadedModel.release` frees those copies when the engine closes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.devices import resolve_device
from ..convert.bergamot import resolve_model_path  # also the bundled names ("en-pt")
from ..errors import ModelLoadError
from ..models.device import to_device
from ..models.registry import load_model
from ..runtime.device import release_cuda_memory
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
    device_index: int | Sequence[int] = 0,
) -> LoadedModel:
    """Check the constructor's device arguments, then load the model once for every worker."""
    device, indices = resolve_device(device, device_index)
    compute.resolve(compute_type, device)  # the name, checked before any loading
    if not tensor_parallel:
        return load(model_path, compute_type, device, indices)
    if device != "cpu":
        raise ValueError("tensor_parallel=True runs on CPU ranks (MPI); use device='cpu'")
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
    compute_type: str  # the effective one: float32, int8_float32, int8_bfloat16, bfloat16; float16 on cuda
    parallel: Group | None = None  # the tensor-parallel group this rank leads
    device: str = "cpu"
    device_indices: tuple[int, ...] = (0,)  # the GPUs, one set of workers per entry (may repeat)
    replicas: dict[int, Any] = field(default_factory=dict)  # GPU index -> the model's copy there

    @property
    def quantization(self) -> str:
        """How the linear layers compute: `compute_type.describe` on the CPU, the compute type on a GPU."""
        return compute.describe(self.model, self.compute_type) if self.device == "cpu" else self.compute_type

    def replica(self, device_index: int | None) -> Any:
        """The model the workers of that GPU (None: the CPU) share."""
        return self.model if device_index is None else self.replicas[device_index]

    def to_devices(self) -> None:
        """Copy the host model once to each listed GPU (a no-op on the CPU or when copied)."""
        if self.device == "cuda" and not self.replicas:
            gpus = dict.fromkeys(self.device_indices)  # each GPU once, in order
            self.replicas = {i: to_device(self.model, i, self.compute_type) for i in gpus}

    def release(self) -> None:
        """Drop the GPU copies and free the CuPy memory pools of their devices; the host model stays.
        Call it once no worker runs on them (Engine.close after joining the workers, unload_model
        after the admitted requests finished)."""
        if self.replicas:
            self.replicas.clear()
            release_cuda_memory(self.device_indices)


def load(
    model_path: str | Path,
    compute_type: str | Mapping[str, str] = "default",
    device: str = "cpu",
    device_indices: tuple[int, ...] = (0,),
) -> LoadedModel:
    model = load_model(model_path)
    stored = getattr(model, "stored_compute_type", "float32")
    effective = compute.resolve(compute_type, device, stored, device_indices)
    if device == "cpu":
        return finish(compute.apply(model, effective), model_path, effective)
    loaded = finish(model, model_path, effective)
    loaded.device, loaded.device_indices = device, device_indices
    loaded.to_devices()
    return loaded


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
    bos = generation.bos_token_id if generation is not None else None
    if bos is None and tokenizer is not None:
        bos = tokenizer.bos_id
    # Ids past the output layer (a config written for a larger vocabulary) cannot be generated anyway.
    banned = () if generation is None else generation.bad_words_ids
    banned = tuple(s for s in banned if all(0 <= i < model.vocab_size for i in s))
    return SpecialIds(
        start=start,
        end=end,
        forced_first=getattr(model, "forced_bos_token_id", None),
        unk=None if tokenizer is None else tokenizer.unk_id,
        bos=bos,
        banned=banned,
    )
