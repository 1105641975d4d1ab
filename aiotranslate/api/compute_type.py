"""`compute_type`, as CTranslate2 names it: which names the engines accept, what this CPU supports,
and what a request resolves to (`resolve`), then applied to a loaded model (`apply`).

Effective types on the CPU:
    float32        every weight float32
    int8_float32   linear layers (output projection included) int8, the rest float32: per the model's
                   `int8_weights` (`weight_types`), weights and activations per row (W8A8), or for
                   the Llama family and Bergamot weight-only (a weight scale per block of 32, float32
                   activations; layers/quantized.py has the measurements); `describe` says which
    int8_bfloat16  as int8_float32 (all linear layers are int8, so no float layer is left for bf16 here)
    bfloat16       linear layers bfloat16 (AVX512_BF16), products summed in float32
Embedding tables, norms and attention stay float32 in every type.

On a CUDA GPU the effective types are float32, float16 (weights and activations in float16,
products and reductions accumulated in float32: cuBLAS and the raw kernels) and bfloat16 (linear,
embedding and output-projection weights in bfloat16, activations float32, products summed in
float32: `models.device_bf16`) on GPUs of compute capability 8.0 or later. There are no int8 GPU
kernels, so the other requests fall back as CTranslate2 falls back on a GPU without them
(`CUDA_REQUESTS`): int8, int16 and int8_float16 -> float16; int8_float32 -> float32;
int8_bfloat16 -> bfloat16; and bfloat16 on a GPU before 8.0 -> float32. "auto" is float16 there.

Requests resolve as CTranslate2 documents for x86-64 CPUs (docs/quantization.md, "Implicit type
conversion on load"): "int8" keeps the model's float type (float32 here: int8_float32);
int8_float16 and int16 -> int8_float32; float16 -> float32; bfloat16 types without AVX512_BF16 ->
their float32 twin; int8 types without the int8 kernels (a build without the extension) -> float32.
"default" is the model's `stored_compute_type`: float32 for the float checkpoints, int8_float32 for
those that store their linear weights in int8, which then run on the file's own values, weight-only:
Bergamot's intgemm8 weights (models/bergamot.py) and a GGUF file whose linear weights are all Q8_0
(convert/gguf.py, `stored_compute_type`). "auto" is the
fastest this CPU supports (int8_float32). A dict picks the entry of the device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import _native
from ..backends.devices import resolve_device
from ..layers.quantized import quantize_model
from ..models.device import BF16_MIN_CAPABILITY, cuda_compute_capability

NAMES = (
    "default", "auto", "float32", "float", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
    "int16", "float16", "bfloat16",
)  # fmt: skip
# Requested name -> the effective type it asks for before the CPU's fallbacks.
REQUESTS = {
    "float32": "float32",
    "float": "float32",
    "float16": "float32",
    "int8": "int8_float32",
    "int8_float32": "int8_float32",
    "int8_float16": "int8_float32",
    "int16": "int8_float32",
    "int8_bfloat16": "int8_bfloat16",
    "bfloat16": "bfloat16",
}
# The same for a CUDA GPU: what our float32/float16/bfloat16 GPU kernels run instead (bfloat16 where
# every listed GPU supports it, else float32).
CUDA_REQUESTS = {
    "float32": "float32",
    "float": "float32",
    "float16": "float16",
    "int8": "float16",
    "int16": "float16",
    "int8_float16": "float16",
    "int8_float32": "float32",
    "int8_bfloat16": "bfloat16",
    "bfloat16": "bfloat16",
}
# Effective type -> (weight type of the linear layers, of the output projection) for quantize_model.
WEIGHTS = {
    "float32": ("float32", "float32"),
    "int8_float32": ("int8", "int8"),
    "int8_bfloat16": ("int8", "int8"),
    "bfloat16": ("bfloat16", "bfloat16"),
}

# Weight type of the linear layers -> what `describe` says of it.
SCHEMES = {
    "float32": "float32",
    "int8": "int8 weights and activations, one scale per row (W8A8)",
    "int8_weight_only": "int8 weights, one scale per block of 32 along K; float32 activations (weight-only)",
    "bfloat16": "bfloat16 weights and activations, float32 sums",
}


def get_supported_compute_types(device: str = "cpu", device_index: int = 0) -> set[str]:
    """The compute types this build runs efficiently on `device` (CTranslate2's function of the same
    name): float32 always; int8 and int8_float32 with the int8 kernels; bfloat16 and int8_bfloat16
    where the bfloat16 kernels run on AVX512_BF16; on a CUDA GPU, float32 and float16, and bfloat16 from compute
    capability 8.0."""
    device, _ = resolve_device(device, device_index)
    if device == "cuda":
        bf16 = cuda_compute_capability(device_index) >= BF16_MIN_CAPABILITY
        return {"float32", "float16"} | ({"bfloat16"} if bf16 else set())
    supported = {"float32"}
    quantized = _native.load("_qgemm")
    if quantized is not None:
        supported |= {"int8", "int8_float32"}
        if quantized.bf16_isa() == "avx512":  # AVX512_BF16, unless AIOTRANSLATE_FORCE_CPU_ISA caps it
            supported |= {"bfloat16", "int8_bfloat16"}
    return supported


def resolve(
    compute_type: str | Mapping[str, str],
    device: str = "cpu",
    stored: str = "float32",
    device_index: int | Sequence[int] = 0,
) -> str:
    """The effective compute type of a request on `device` ("cpu", "cuda" or "auto") and its GPUs
    `device_index` for a model stored as `stored`."""
    device, indices = resolve_device(device, device_index)
    if isinstance(compute_type, Mapping):
        compute_type = compute_type.get(device, "default")
    if compute_type not in NAMES:
        raise ValueError(f"compute_type {compute_type!r} is not one of {', '.join(NAMES)}")
    if device == "cuda":
        if compute_type in ("default", "auto"):
            compute_type = stored if compute_type == "default" else "float16"
        wanted = CUDA_REQUESTS[compute_type]
        if wanted == "bfloat16" and any(cuda_compute_capability(i) < BF16_MIN_CAPABILITY for i in indices):
            return "float32"
        return wanted
    supported = get_supported_compute_types(device)
    if compute_type == "default":
        compute_type = stored
    elif compute_type == "auto":
        compute_type = "int8_float32" if "int8_float32" in supported else "float32"
    wanted = REQUESTS.get(compute_type, compute_type)
    if wanted in supported:
        return wanted
    if wanted == "int8_bfloat16" and "int8_float32" in supported:
        return "int8_float32"
    return "float32"


def weight_types(model, compute_type: str) -> tuple[str, str]:
    """The weight types of `quantize_model` (linear layers, output projection) for the effective CPU
    `compute_type` on `model`: its int8 is the model's `int8_weights` ("int8", per-row weights and
    activations, where the model does not say; "int8_weight_only" for the Llama family)."""
    int8 = getattr(model, "int8_weights", "int8")
    weights, output = WEIGHTS[compute_type]
    return (int8 if weights == "int8" else weights), (int8 if output == "int8" else output)


def describe(model, compute_type: str) -> str:
    """How the linear layers of `model` compute under the effective CPU `compute_type`."""
    return SCHEMES[weight_types(model, compute_type)[0]]


def apply(model, compute_type: str):
    """The model with its linear layers converted for the effective `compute_type` (in place)."""
    return quantize_model(model, *weight_types(model, compute_type))
