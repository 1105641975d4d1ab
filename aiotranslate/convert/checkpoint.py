"""Read the weights of a model directory: `model.safetensors` or a sharded `model.safetensors.index.json`.

What it is: a name -> float32 array reader over safetensors files. float32 tensors are read-only
`np.memmap` views built from the safetensors header (the file is the memory, shared by every process
mapping it); float16, bfloat16 (through ml_dtypes) and float64 tensors are upcast to float32 copies,
also read-only. Every failure is a `ModelLoadError` naming the file and the tensor: a missing file or
tensor, a truncated file, a wrong shape or a non-float dtype. It tracks which tensors were read so a
loader can refuse a checkpoint holding tensors it does not understand.

What it is not: it never unpickles. `pytorch_model.bin` is refused with a message saying to convert
it to safetensors. It knows no architecture: loaders (in `models/`) ask for tensors by their names.

Format (https://github.com/huggingface/safetensors#format): an 8-byte little-endian header length N,
N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data,
offsets relative to byte 8 + N.
"""

from __future__ import annotations

import fnmatch
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open

from ..errors import ModelLoadError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")

# safetensors dtype -> numpy dtype as stored (little-endian); all are upcast to float32 on read.
FLOAT_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F64": np.dtype("<f8"),
}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies: its file, its stored dtype name, shape and absolute byte range."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and check the header of one safetensors file (no tensor data is read)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ModelLoadError(f"{path}: not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", prefix)
            if 8 + n > size:
                raise ModelLoadError(f"{path}: truncated file: the header needs {8 + n} bytes, the file has {size}")
            header = json.loads(f.read(n))
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read: {e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: corrupt safetensors header: {e}") from e
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: corrupt safetensors header: not a JSON object")
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(o) for o in entry["data_offsets"])
            shape = tuple(int(d) for d in entry["shape"])
            info = TensorInfo(path, str(entry["dtype"]), shape, 8 + n + begin, 8 + n + end)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{path}: corrupt header entry for tensor {name!r}: {e}") from e
        if info.end > size:
            raise ModelLoadError(
                f"{path}: truncated file: tensor {name!r} ends at byte {info.end}, the file has {size} bytes"
            )
        tensors[name] = info
    # safetensors' own validation catches what the checks above do not (overlaps, gaps, bad sizes).
    try:
        with safe_open(path, framework="np"):
            pass
    except SafetensorError as e:
        raise ModelLoadError(f"{path}: invalid safetensors file: {e}") from e
    return tensors


def _index(directory: Path) -> dict[str, TensorInfo]:
    """The tensors of a directory, from its single file or its shard index."""
    index_path = directory / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelLoadError(f"{index_path}: not a valid shard index (needs a 'weight_map'): {e}") from e
        tensors: dict[str, TensorInfo] = {}
        for shard in shards:
            if not (directory / shard).is_file():
                raise ModelLoadError(f"{index_path}: shard {shard!r} is missing from {directory}")
            tensors.update(read_header(directory / shard))
        for name, shard in weight_map.items():
            if name not in tensors or tensors[name].file.name != shard:
                raise ModelLoadError(f"{directory / shard}: tensor {name!r} listed in {INDEX_FILE} is not in it")
        return tensors
    if (directory / SINGLE_FILE).is_file():
        return read_header(directory / SINGLE_FILE)
    for pickled in PICKLE_FILES:
        if (directory / pickled).is_file():
            raise ModelLoadError(
                f"{directory / pickled}: PyTorch pickle checkpoints are not loaded (unpickling can run "
                "arbitrary code). Convert the model to safetensors, e.g. "
                "`AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`."
            )
    raise ModelLoadError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE} found")


class Checkpoint:
    """The weights of one model directory, read by name as float32 arrays (read-only)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.tensors = _index(self.directory)
        self._maps: dict[Path, np.memmap] = {}
        self._read: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def get(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Tensor `name` as a read-only float32 array, checked against `shape` when given."""
        info = self.tensors.get(name)
        if info is None:
            where = self.directory / (INDEX_FILE if (self.directory / INDEX_FILE).is_file() else SINGLE_FILE)
            raise ModelLoadError(f"{where}: missing tensor {name!r}")
        if shape is not None and info.shape != tuple(shape):
            raise ModelLoadError(f"{info.file}: tensor {name!r} has shape {list(info.shape)}, expected {list(shape)}")
        stored = FLOAT_DTYPES.get(info.dtype)
        if stored is None:
            raise ModelLoadError(
                f"{info.file}: tensor {name!r} has dtype {info.dtype}, expected one of {sorted(FLOAT_DTYPES)}"
            )
        count = int(np.prod(info.shape, dtype=np.int64))
        if info.end - info.begin != count * stored.itemsize:
            raise ModelLoadError(f"{info.file}: tensor {name!r}: byte range does not match {info.dtype} {info.shape}")
        raw = self._map(info.file)[info.begin : info.end].view(stored).reshape(info.shape)
        if stored != np.float32 or info.begin % stored.itemsize:
            # Upcast (or realign) into an owned copy; float32 stays a view of the mapped file.
            raw = np.array(raw, dtype=np.float32)
            raw.flags.writeable = False
        self._read.add(name)
        return raw

    def get_optional(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        return self.get(name, shape) if name in self.tensors else None

    def check_all_read(self, ignore: tuple[str, ...] = ()) -> None:
        """Refuse tensors no loader asked for (a bias or a layer the model would silently drop),
        except those matching the glob patterns `ignore` (buffers such as rotary inv_freq)."""
        unread = [
            n for n in sorted(self.tensors) if n not in self._read and not any(fnmatch.fnmatch(n, p) for p in ignore)
        ]
        if unread:
            shown = ", ".join(repr(n) for n in unread[:5]) + (", ..." if len(unread) > 5 else "")
            raise ModelLoadError(
                f"{self.tensors[unread[0]].file}: {len(unread)} unexpected tensor(s) for this architecture: {shown}"
            )

    def _map(self, path: Path) -> np.memmap:
        if path not in self._maps:
            try:
                self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
            except (OSError, ValueError) as e:
                raise ModelLoadError(f"{path}: cannot memory-map: {e}") from e
        return self._maps[path]
