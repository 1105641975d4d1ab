"""Marian's binary lexical shortlist (`lex.*.s2t.bin`): for each source word, the few target words a
translation of it is likely to use. Scoring only their union instead of the whole vocabulary is a
large part of Bergamot's speed on CPU.

Format (marian-nmt/marian-dev src/data/shortlist.h and shortlist.cpp, BinaryShortlistGenerator::load):

    header: 6 x uint64: magic 0xF11A48D5013417F5, checksum, firstNum, bestNum,
            wordToOffsetSize (source vocabulary + 1), shortListsSize
    wordToOffset: uint64[wordToOffsetSize]
    shortLists:   uint32[shortListsSize]; source word w's candidates are
                  shortLists[wordToOffset[w] : wordToOffset[w + 1]]

The checksum is util::hashMem<uint64_t, uint64_t> over the (file size - 16) / 8 words from firstNum
on (src/common/hash.h: seed ^= v + 0x9e3779b9 + (seed << 6) + (seed >> 2), std::hash of an integer
being the integer). Bergamot configs turn the check off (`shortlist: [lex...bin, false]`); `verify`
turns it on.

The target words of one sentence (BinaryShortlistGenerator::generate): ids [0, firstNum) (the most
frequent), the candidates of every source word, the source ids themselves when source and target
share one vocabulary (bergamot-translator passes shared = source vocab == target vocab), then the
smallest ids >= firstNum not yet taken until the count is a multiple of 8 (for intgemm), sorted.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

MAGIC = 0xF11A48D5013417F5
_HEADER = struct.Struct("<6Q")
_MASK64 = (1 << 64) - 1


class Shortlist:
    """One binary lexical shortlist file, memory-mapped and read-only."""

    def __init__(self, path: str | Path, *, verify: bool = False):
        self.path = Path(path)
        try:
            data = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"{self.path}: cannot read: {e}") from e
        if len(data) < _HEADER.size:
            raise ModelLoadError(f"{self.path}: not a binary shortlist ({len(data)} bytes)")
        magic, checksum, self.first_num, self.best_num, n_offsets, n_words = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ModelLoadError(f"{self.path}: not a binary shortlist (magic {magic:#x}, expected {MAGIC:#x})")
        expected = _HEADER.size + 8 * n_offsets + 4 * n_words
        if expected != len(data):
            raise ModelLoadError(f"{self.path}: header claims {expected} bytes, the file has {len(data)}")
        self.offsets = data[_HEADER.size : _HEADER.size + 8 * n_offsets].view("<u8")
        self.words = data[_HEADER.size + 8 * n_offsets :].view("<u4")
        if n_offsets == 0 or np.any(np.diff(self.offsets.astype(np.int64)) < 0) or self.offsets[-1] > n_words:
            raise ModelLoadError(f"{self.path}: corrupt offset table")
        if verify and _checksum(data) != checksum:
            raise ModelLoadError(f"{self.path}: checksum mismatch: the shortlist is corrupted")

    @property
    def source_vocab_size(self) -> int:
        return len(self.offsets) - 1

    def check_vocab(self, source_size: int, target_size: int) -> None:
        """Refuse a shortlist made for other vocabularies than the model's."""
        if self.source_vocab_size != source_size:
            raise ModelLoadError(
                f"{self.path}: made for a source vocabulary of {self.source_vocab_size}, the model has {source_size}"
            )
        if len(self.words) and int(self.words.max()) >= target_size:
            raise ModelLoadError(f"{self.path}: target id {int(self.words.max())} is outside the vocabulary of {target_size}")

    def target_ids(self, source_ids: Sequence[int], target_size: int, *, shared_vocab: bool) -> np.ndarray:
        """Sorted int32 target ids to score when translating `source_ids` (one sentence or a batch)."""
        chosen = np.zeros(target_size, dtype=bool)
        chosen[: self.first_num] = True
        source = np.unique(np.asarray(source_ids, dtype=np.int64))
        if source.size and (source[0] < 0 or source[-1] >= self.source_vocab_size):
            raise ValueError(f"source id out of range for a shortlist of {self.source_vocab_size} words")
        for w in source:
            chosen[self.words[self.offsets[w] : self.offsets[w + 1]]] = True
        if shared_vocab:
            chosen[source[source < target_size]] = True
        missing = -int(chosen.sum()) % 8
        if missing:
            free = np.flatnonzero(~chosen[self.first_num :])[:missing] + self.first_num
            chosen[free] = True
        return np.flatnonzero(chosen).astype(np.int32)


def _checksum(data: np.ndarray) -> int:
    seed = 0
    for v in data[16 : 16 + (len(data) - 16) // 8 * 8].view("<u8").tolist():
        seed ^= (v + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & _MASK64
    return seed
