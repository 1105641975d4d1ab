"""The binary lexical shortlist: header checks, checksum, and the target words Marian's
BinaryShortlistGenerator::generate selects for a sentence."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from marian_files import write_shortlist

from aiotranslate.convert.shortlist import Shortlist
from aiotranslate.errors import ModelLoadError

CANDIDATES = [[], [10, 12], [12, 30], [5], [31]]  # source words 0..4


@pytest.fixture
def path(tmp_path):
    return write_shortlist(tmp_path / "lex.s2t.bin", CANDIDATES, first_num=4)


def test_target_ids_union_first_words_and_pad_to_eight(path):
    lex = Shortlist(path, verify=True)
    assert (lex.first_num, lex.best_num, lex.source_vocab_size) == (4, 50, 5)
    got = lex.target_ids([1, 2, 0], 40, shared_vocab=False)
    # [0, 4) + {10, 12, 30} = 7 ids, padded with the first free id >= firstNum (4).
    assert got.tolist() == [0, 1, 2, 3, 4, 10, 12, 30]
    assert got.dtype == np.int32


def test_shared_vocab_adds_the_source_words(tmp_path):
    candidates = [[] for _ in range(40)]
    candidates[35] = [36]
    lex = Shortlist(write_shortlist(tmp_path / "lex.bin", candidates, first_num=4))
    assert lex.target_ids([35], 40, shared_vocab=True).tolist() == [0, 1, 2, 3, 4, 5, 35, 36]
    assert lex.target_ids([35], 40, shared_vocab=False).tolist() == [0, 1, 2, 3, 4, 5, 6, 36]


def test_source_id_out_of_range(path):
    with pytest.raises(ValueError, match="source id"):
        Shortlist(path).target_ids([5], 40, shared_vocab=False)


def test_vocab_mismatch_is_refused(path):
    lex = Shortlist(path)
    lex.check_vocab(5, 32)
    with pytest.raises(ModelLoadError, match="source vocabulary of 5"):
        lex.check_vocab(6, 32)
    with pytest.raises(ModelLoadError, match="target id 31 is outside the vocabulary of 31"):
        lex.check_vocab(5, 31)


def test_corruption_is_detected(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # a candidate id changes: only the checksum sees it
    path.write_bytes(bytes(data))
    Shortlist(path)  # Bergamot's default: no check
    with pytest.raises(ModelLoadError, match="checksum"):
        Shortlist(path, verify=True)


def test_bad_magic_and_size(tmp_path, path):
    data = path.read_bytes()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(struct.pack("<Q", 1) + data[8:])
    with pytest.raises(ModelLoadError, match="not a binary shortlist"):
        Shortlist(bad)
    bad.write_bytes(data[:-4])
    with pytest.raises(ModelLoadError, match=r"header claims \d+ bytes"):
        Shortlist(bad)
