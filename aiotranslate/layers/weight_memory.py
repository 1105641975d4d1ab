"""One block of memory, on huge pages, for the weights that the compute-type pass packs.

Decoding a few rows at a time reads every weight from memory at every step, one matrix after the
other. numpy asks the kernel for huge pages (2 MiB) only for arrays from 4 MiB on; most packed
matrices of a small model are smaller (OPUS-MT's int8 ones: 0.25-1 MiB), so they sit on 4 KiB
pages, scattered. `gather` copies them, in the order the pass met them, into one private anonymous
mapping advised MADV_HUGEPAGE (a hint: where transparent huge pages are off, the block is plain memory).
`python benchmarks/weight_memory.py --threads 1 2` (OPUS-MT's shape, batch 1, two runs on a shared
Zen 4): int8 steps 1.04-1.19x faster gathered, float32 0.96-1.07x (its largest matrices, 4 MiB
and more, had huge pages already).
"""

from __future__ import annotations

import dataclasses
import mmap

import numpy as np

from ..ops import aligned

HUGE_PAGE = 2 << 20


def gather(forms) -> None:
    """Move, in place, the arrays that the weights of `forms` (objects with a `weight`: a frozen
    dataclass of arrays and tuples of arrays) own into one block. Views of other memory (a mapped
    checkpoint file, which every process shares) stay where they are."""
    forms = list(forms)
    total = sum(_padded(a.nbytes) for form in forms for a in _owned(form.weight))
    if not total:
        return
    # Whole huge pages from a 2 MiB boundary on, wherever the mapping starts (the spare is address
    # space only). Private: a shared anonymous mapping is shmem, whose huge-page setting is mostly never.
    pages = -(-total // HUGE_PAGE) * HUGE_PAGE
    block = mmap.mmap(-1, pages + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        block.madvise(mmap.MADV_HUGEPAGE)
    memory = np.frombuffer(block, dtype=np.uint8)
    offset = -memory.ctypes.data % HUGE_PAGE
    for form in forms:  # each form's old arrays are freed as it moves: the peak is the block + one form
        moved = {}
        for a in _owned(form.weight):
            copy = memory[offset : offset + a.nbytes].view(a.dtype).reshape(a.shape)
            copy[...] = a
            copy.flags.writeable = False
            moved[id(a)] = copy
            offset += _padded(a.nbytes)
        form.weight = _replaced(form.weight, moved)


def _padded(nbytes: int) -> int:
    return -(-nbytes // aligned.ALIGNMENT) * aligned.ALIGNMENT  # each array starts on a cache line


def _owned(weight) -> list[np.ndarray]:
    """The arrays of `weight`'s fields (tuples included) that own their memory (or an aligned buffer)."""
    arrays = []
    for field in dataclasses.fields(weight):
        value = getattr(weight, field.name)
        for a in value if isinstance(value, tuple) else (value,):
            if isinstance(a, np.ndarray) and (a.flags.owndata or aligned.owns_buffer(a)) and a.nbytes:
                arrays.append(a)
    return arrays


def _replaced(weight, moved: dict[int, np.ndarray]):
    """weight with each array of `moved` (by id) replaced by its copy."""
    changes = {}
    for field in dataclasses.fields(weight):
        value = getattr(weight, field.name)
        if isinstance(value, tuple):
            changes[field.name] = tuple(moved.get(id(a), a) for a in value)
        elif id(value) in moved:
            changes[field.name] = moved[id(value)]
    return dataclasses.replace(weight, **changes)
