"""The Marian binary model reader on small files written from the documented format: item layout,
intgemm dequantization and transposition, model.yml, and every format error naming file and item."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from marian_files import FLOAT32, item_config, item_float, item_intgemm, write_binary

from aiotranslate.convert.marian_binary import MarianBinary
from aiotranslate.errors import ModelLoadError

YML = 'dim-emb: 4\ndim-vocabs:\n  - 6\n  - 7\ntied-embeddings-all: true\ntransformer-postprocess-top: ""\ninput-types: []\n'


def _file(tmp_path, *extra, name="model.bin"):
    return write_binary(tmp_path / name, [item_config(YML), *extra])


@pytest.mark.parametrize("type_code", [0x4101, 0x10001])  # browsermt and marian-nmt spellings of intgemm8
def test_intgemm_weight_is_dequantized_and_transposed(tmp_path, type_code):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3)).astype(np.float32)  # [K, N]: Marian computes x @ W
    m = MarianBinary(_file(tmp_path, item_intgemm("enc_W", w, type_code)))
    q, mult = m.quantized("enc_W")
    assert q.dtype == np.int8 and q.shape == (3, 5) and np.abs(q).max() == 127  # stored as (N, K)
    assert mult == pytest.approx(127 / np.abs(w).max(), rel=1e-6)
    np.testing.assert_allclose(m.linear_weight("enc_W", (5, 3)), w.T, atol=0.5 / mult)
    np.testing.assert_array_equal(m.tensor("enc_W"), m.linear_weight("enc_W").T)


def test_embeddings_are_stored_untransposed(tmp_path):
    table = np.arange(12, dtype=np.float32).reshape(4, 3) - 6
    m = MarianBinary(_file(tmp_path, item_intgemm("Wemb", table)))
    assert m.quantized("Wemb")[0].shape == (4, 3)
    np.testing.assert_allclose(m.tensor("Wemb", (4, 3)), table, atol=6 / 127)


def test_float_items_are_read_only_views_and_scalars(tmp_path):
    b = np.array([[1.5, -2.0, 3.25]], dtype=np.float32)
    alpha = np.array([[7.5]], dtype=np.float32)
    m = MarianBinary(
        _file(tmp_path, item_float("b", b), item_float("x_QuantMultA", alpha), item_intgemm("Wemb_QuantMultA", alpha))
    )
    got = m.tensor("b", (1, 3))
    np.testing.assert_array_equal(got, b)
    assert not got.flags.writeable
    assert m.scalar("x_QuantMultA") == 7.5
    assert m.scalar("Wemb_QuantMultA") == pytest.approx(7.5)  # intgemm8 scalar: 127 / (127 / 7.5)
    assert m.items["b"].offset % 256 == 0 and m.items["b"].type == FLOAT32


def test_model_yml_is_parsed(tmp_path):
    cfg = MarianBinary(_file(tmp_path)).config
    assert cfg == {
        "dim-emb": 4,
        "dim-vocabs": [6, 7],
        "tied-embeddings-all": True,
        "transformer-postprocess-top": "",
        "input-types": [],
    }


def _error(path, match):
    with pytest.raises(ModelLoadError, match=match) as info:
        MarianBinary(path)
    assert str(path) in str(info.value)
    return info.value


def test_wrong_version_is_refused(tmp_path):
    _error(write_binary(tmp_path / "m.bin", [item_config(YML)], version=2), "version 2")


def test_truncated_file_names_the_item(tmp_path):
    path = _file(tmp_path, item_float("decoder_b", np.ones((1, 64))))
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    _error(path, "'decoder_b' ends past")


def test_short_header_is_refused(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(struct.pack("<Q", 1))
    _error(path, "truncated")


def test_packed_and_unknown_types_are_refused(tmp_path):
    packed = ("W", 0x11001, (2, 2), b"\0" * 8)  # marian-nmt intgemm8avx2: CPU-specific layout
    _error(_file(tmp_path, packed), "'W' has unsupported type 0x11001 .*packed")


def test_item_too_small_for_its_shape(tmp_path):
    _error(_file(tmp_path, ("W", FLOAT32, (1000,), b"\0" * 16)), "'W' holds 256 bytes, too few")


def test_missing_items_and_config(tmp_path):
    m = MarianBinary(_file(tmp_path))
    with pytest.raises(ModelLoadError, match="missing item 'encoder_W'"):
        m.tensor("encoder_W")
    with pytest.raises(ModelLoadError, match=r"'special:model.yml' has shape \[\d+\], expected \[1, 1\]"):
        m.tensor("special:model.yml", (1, 1))
    _error(write_binary(tmp_path / "no_cfg.bin", [item_float("b", np.ones(2))]), "missing item 'special:model.yml'")


def test_unreadable_model_yml_is_refused(tmp_path):
    path = write_binary(tmp_path / "m.bin", [item_config("dim-emb: 4\n  weird: nested\n")])
    _error(path, "'special:model.yml': cannot read line 2")
