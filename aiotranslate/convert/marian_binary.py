"""Read Marian's binary model format (`model.*.bin`): the files Bergamot and translateLocally ship.

What it is: a name -> array reader over one `.bin` file, faithful to what is stored. float32 items
are read-only views of the memory-mapped file; int8-quantized (intgemm8) items can be read as
their int8 payload plus multiplier, or dequantized to float32. `config` is the architecture from the
`special:model.yml` item. Every failure is a `ModelLoadError` naming the file and the item.

What it is not: it knows no architecture (models/bergamot.py asks for items by name) and never
writes. CPU-specific packed layouts (intgemm8avx2, ...) are refused: Bergamot ships the
architecture-agnostic type.

Layout (marian-nmt/marian-dev and browsermt/marian-dev, src/common/binary.cpp, loadItems/saveItems):

    uint64 version (1), uint64 n
    n headers of 4 x uint64: name length (with its NUL), type code, shape rank, data bytes
    n NUL-terminated names, then n shapes (rank x int32 each)
    uint64 pad, pad zero bytes: the data starts on a 256-byte boundary
    n data blocks in header order, each `data bytes` long (padded so the next stays 256-aligned)

Type codes (src/common/types.h): byte size in the low byte, class bits above it. float32 0x404;
int8 0x101 (the model.yml text). intgemm8 is 0x4101 in browsermt/marian-dev (signed 0x100 +
intgemm_type 0x4000), 0x10001 in marian-nmt/marian-dev (intgemm_type 0x10000); intgemm16 likewise.

intgemm payload (browsermt/marian-dev src/tensors/cpu/integer_common.h, prepareAndTransposeB and
unquantizeWemb): the shape's elements as int8 (int16), then one float32 multiplier q with
w = stored / q (per tensor; the stored values reach +-127, so q = 127 / max|w|). A weight of header
shape [K, N] (Marian computes x @ W) is stored already transposed, N rows of K: intgemm's
"QuantizedTransposed" input, which is exactly torch.nn.Linear's (out, in) layout. Embedding tables
(names containing "Wemb") are stored untransposed, [V][C]: Marian dequantizes them for the gather.

"alphas" models add `<weight>_QuantMultA` items: precomputed activation multipliers a, x_int8 =
round(clip(x * a, -127, 127)) (slimt/qmm/Intgemm.inl.cc, PrepareA). Most are float32 (1, 1);
`Wemb_QuantMultA` is an intgemm8 (1, 1) item (127 and a multiplier) whose dequantized value equals
`none_QuantMultA`, the multiplier of the tied output layer. `scalar` reads both kinds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

BINARY_VERSION = 1
CONFIG_ITEM = "special:model.yml"

FLOAT32, INT8 = 0x404, 0x101
INTGEMM = {0x4101: np.int8, 0x4102: np.int16, 0x10001: np.int8, 0x10002: np.int16}
PLAIN = {FLOAT32: np.float32, INT8: np.int8}


@dataclass(frozen=True)
class Item:
    """One stored item: its type code, header shape and absolute byte range in the file."""

    name: str
    type: int
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class MarianBinary:
    """The items of one Marian `.bin` model file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"{self.path}: cannot read: {e}") from e
        self.items = self._parse_header()
        self.config = _parse_model_yml(self.path, self.raw(CONFIG_ITEM).tobytes())

    def __contains__(self, name: str) -> bool:
        return name in self.items

    def item(self, name: str) -> Item:
        try:
            return self.items[name]
        except KeyError:
            raise ModelLoadError(f"{self.path}: missing item {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        """The stored elements of a plain (float32/int8) item, flat, as a read-only view."""
        item = self.item(name)
        dtype = PLAIN.get(item.type)
        if dtype is None:
            raise ModelLoadError(f"{self.path}: item {name!r} has type {item.type:#x}, not float32 or int8")
        return self._view(item, dtype, item.size)

    def tensor(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A float32 or intgemm item as float32 in its header shape (intgemm weights dequantized and
        transposed back to [K, N]); checked against `shape` when given."""
        item = self.item(name)
        self._check_shape(item, shape)
        if item.type == FLOAT32:
            return self.raw(name).reshape(item.shape)
        values, mult = self.quantized(name)
        out = values.astype(np.float32) / np.float32(mult)
        if _stored_transposed(item):
            out = np.ascontiguousarray(out.T)
        return out.reshape(item.shape)

    def linear_weight(self, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Weight [K, N] of x @ W as a float32 (N, K) matrix (torch.nn.Linear's layout)."""
        item = self.item(name)
        self._check_shape(item, shape)
        if len(item.shape) != 2:
            raise ModelLoadError(f"{self.path}: item {name!r} has shape {list(item.shape)}, expected a matrix")
        if item.type == FLOAT32:
            return np.ascontiguousarray(self.raw(name).reshape(item.shape).T)
        values, mult = self.quantized(name)
        if not _stored_transposed(item):
            values = values.T
        return np.ascontiguousarray(values, dtype=np.float32) / np.float32(mult)

    def quantized(self, name: str) -> tuple[np.ndarray, float]:
        """An intgemm item as stored: its integer payload (2-D as stored: (N, K) for a weight,
        (V, C) for an embedding) and its multiplier q, w = stored / q."""
        item = self.item(name)
        dtype = INTGEMM.get(item.type)
        if dtype is None:
            raise ModelLoadError(f"{self.path}: item {name!r} has type {item.type:#x}, not an intgemm type")
        itemsize = np.dtype(dtype).itemsize
        values = self._view(item, dtype, item.size)
        (mult,) = struct.unpack_from("<f", self._data, item.offset + item.size * itemsize)
        if not np.isfinite(mult) or mult <= 0:
            raise ModelLoadError(f"{self.path}: item {name!r} has an invalid quantization multiplier {mult}")
        rows, cols = _stored_matrix(item)
        return values.reshape(rows, cols), float(mult)

    def scalar(self, name: str) -> float:
        """A (1, 1) item such as `*_QuantMultA`, stored as float32 or as an intgemm8 scalar."""
        item = self.item(name)
        if item.size != 1:
            raise ModelLoadError(f"{self.path}: item {name!r} has shape {list(item.shape)}, expected one value")
        return float(self.tensor(name).reshape(()))

    def _view(self, item: Item, dtype, count: int) -> np.ndarray:
        return self._data[item.offset : item.offset + count * np.dtype(dtype).itemsize].view(dtype)

    def _check_shape(self, item: Item, shape) -> None:
        if shape is not None and item.shape != tuple(shape):
            raise ModelLoadError(f"{self.path}: item {item.name!r} has shape {list(item.shape)}, expected {list(shape)}")

    def _parse_header(self) -> dict[str, Item]:
        data, size = self._data, len(self._data)

        def read(fmt: str, at: int, what: str):
            if at + struct.calcsize(fmt) > size:
                raise ModelLoadError(f"{self.path}: truncated file: {what} ends past its {size} bytes")
            return struct.unpack_from(fmt, data, at)

        version, n = read("<QQ", 0, "the file header")
        if version != BINARY_VERSION:
            raise ModelLoadError(f"{self.path}: not a Marian binary model (version {version}, expected {BINARY_VERSION})")
        if n > (size - 16) // 32:
            raise ModelLoadError(f"{self.path}: corrupt header: {n} items cannot fit in {size} bytes")
        headers = [read("<4Q", 16 + 32 * i, f"item header {i}") for i in range(n)]
        pos = 16 + 32 * n
        names = []
        for i, (name_len, _, _, _) in enumerate(headers):
            raw = bytes(data[pos : pos + name_len])
            if len(raw) != name_len or not raw.endswith(b"\0"):
                raise ModelLoadError(f"{self.path}: corrupt header: name of item {i} is truncated")
            names.append(raw[:-1].decode("utf-8", errors="replace"))
            pos += name_len
        shapes = []
        for name, (_, _, rank, _) in zip(names, headers):
            shape = read(f"<{rank}i", pos, f"the shape of item {name!r}")
            if any(d < 0 for d in shape):
                raise ModelLoadError(f"{self.path}: item {name!r} has a negative dimension in {list(shape)}")
            shapes.append(tuple(shape))
            pos += 4 * rank
        (pad,) = read("<Q", pos, "the alignment padding")
        pos += 8 + pad
        items = {}
        for name, (_, type_code, _, nbytes), shape in zip(names, headers, shapes):
            item = Item(name, type_code, shape, pos, nbytes)
            if pos + nbytes > size:
                raise ModelLoadError(f"{self.path}: truncated file: item {name!r} ends past its {size} bytes")
            dtype = PLAIN.get(type_code, INTGEMM.get(type_code))
            if dtype is None:
                hint = " (a CPU-specific packed layout?)" if type_code & 0x1F800 else ""
                raise ModelLoadError(f"{self.path}: item {name!r} has unsupported type {type_code:#x}{hint}")
            needed = item.size * np.dtype(dtype).itemsize + (4 if type_code in INTGEMM else 0)  # + multiplier
            if needed > nbytes:
                raise ModelLoadError(f"{self.path}: item {name!r} holds {nbytes} bytes, too few for {list(shape)}")
            items[name] = item
            pos += nbytes
        if CONFIG_ITEM not in items:
            raise ModelLoadError(f"{self.path}: missing item {CONFIG_ITEM!r} (the architecture)")
        return items


def _stored_transposed(item: Item) -> bool:
    """Intgemm weight matrices are stored as [N][K] of a [K, N] header shape; embeddings and
    scalars as they are (integer_common.h: prepareAndTransposeB vs unquantizeWemb)."""
    return len(item.shape) == 2 and "Wemb" not in item.name


def _stored_matrix(item: Item) -> tuple[int, int]:
    cols = item.shape[-1] if item.shape else 1
    rows = item.size // cols if cols else 0
    return (cols, rows) if _stored_transposed(item) else (rows, cols)


def _parse_model_yml(path: Path, text: bytes) -> dict:
    """The flat YAML Marian writes for `special:model.yml` (yaml-cpp, one key per line): scalars,
    `[]`, and block lists of scalars ("  - 32000"). Values become bool, int, float or str."""
    config: dict = {}
    key = None
    for n, line in enumerate(text.rstrip(b"\0").decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("- ") and key is not None and isinstance(config[key], list):
            config[key].append(_yaml_scalar(line.lstrip()[2:]))
        elif not line.startswith((" ", "-")) and ":" in line:
            key, _, value = line.partition(":")
            value = value.strip()
            config[key] = [] if value in ("", "[]") else _yaml_scalar(value)
        else:
            raise ModelLoadError(f"{path}: item {CONFIG_ITEM!r}: cannot read line {n}: {line!r}")
    return config


def _yaml_scalar(value: str):
    value = value.strip()
    if value in ("true", "false"):
        return value == "true"
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
