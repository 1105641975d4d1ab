"""The sharding pass in one process (no MPI needed): which rows and columns each rank keeps, that a
shard of a file-backed weight is a view of the file (a rank reads only its pages), the load-time
error for head counts that do not split, and `MpiInfo` / tensor_parallel without mpi4py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from aiotranslate import Generator, MpiInfo
from aiotranslate.models.registry import load_model
from aiotranslate.runtime.tensor_parallel import (
    Partition,
    RowParallelLinear,
    VocabParallelEmbedding,
    VocabParallelHead,
    shard_model,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from hf_fixtures import tiny_gpt2, tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """6 query heads of 4 over 2 KV heads (GQA ratio 3), hidden 24, FFN 40, vocabulary 61."""
    path = tmp_path_factory.mktemp("llama")
    tiny_llama(path)
    return path


def test_partition_splits_as_evenly_as_it_goes():
    assert [Partition(r, 3).bounds(61) for r in range(3)] == [(0, 21), (21, 41), (41, 61)]
    assert Partition(1, 2).widths(61) == [31, 30]
    with pytest.raises(ValueError, match="divides by 4"):
        Partition(0, 4).heads(6, 6)


def test_gqa_shard_keeps_its_kv_head_with_its_query_group_and_its_columns(llama_dir):
    """Rank 1 of 2 holds KV head 1 and query heads 3-5: qkv rows Q[12:24], K[4:8], V[4:8]; the output
    projection's columns 12:24; FFN units 20:40 of gate and of up; vocabulary rows 31:61."""
    whole = load_model(llama_dir)
    attention, ffn = whole.layers[0].attention, whole.layers[0].ffn
    qkv, out, gate_up, down = (attention.qkv.weight, attention.out.weight, ffn.gate_up.weight, ffn.down.weight)
    table, head = whole.embedding.table, whole.lm_head.weight
    model = shard_model(load_model(llama_dir), rank=1, size=2)
    attention, ffn = model.layers[0].attention, model.layers[0].ffn
    np.testing.assert_array_equal(attention.qkv.weight, np.concatenate([qkv[12:24], qkv[24 + 4 : 32], qkv[32 + 4 :]]))
    assert attention.n_kv_heads == 1 and attention.group == 3
    assert isinstance(attention.out, RowParallelLinear) and attention.out.in_features == 24
    np.testing.assert_array_equal(attention.out.local.weight, out[:, 12:24])
    np.testing.assert_array_equal(ffn.gate_up.weight, np.concatenate([gate_up[20:40], gate_up[60:80]]))
    np.testing.assert_array_equal(ffn.down.local.weight, down[:, 20:40])
    assert isinstance(model.embedding, VocabParallelEmbedding) and isinstance(model.lm_head, VocabParallelHead)
    np.testing.assert_array_equal(model.embedding.local.table, table[31:])
    np.testing.assert_array_equal(model.lm_head.local.weight, head[31:])
    assert (model.embedding.start, model.embedding.vocab_size, model.vocab_size) == (31, 61, 61)


def test_a_tied_table_becomes_one_shard(tmp_path):
    tiny_gpt2(tmp_path, n_head=6)
    model = shard_model(load_model(tmp_path), rank=0, size=2)
    assert model.embedding.local.table is model.lm_head.local.weight


def test_kv_heads_that_do_not_split_are_refused(llama_dir):
    with pytest.raises(ValueError, match="6 attention heads over 2 key/value heads"):
        shard_model(load_model(llama_dir), rank=0, size=3)


def _rss_kib(kind: str) -> int:
    """RssFile (pages of mapped files this process touched) or RssAnon, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"Rss{kind}:"):
            return int(line.split()[1])
    pytest.skip("no /proc/self/status RSS breakdown on this system")


def test_a_rank_keeps_only_the_pages_of_its_shard(tmp_path):
    """Both 16384 x 64 tables (embeddings, LM head: 8 MiB, most of the file) stay views of the mapped
    file: after loading and sharding, reading every weight of rank 1's shard leaves about half of the
    file's pages in the process (what the loader read for its fused copies is dropped), and no copy."""
    tiny_llama(tmp_path, vocab_size=16384, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)
    tables_kib = 2 * 16384 * 64 * 4 // 1024
    file_before, anon_before = _rss_kib("File"), _rss_kib("Anon")
    model = shard_model(load_model(tmp_path), rank=1, size=2)
    assert np.shares_memory(model.embedding.local.table, model.embedding.local.table.base)
    total = sum(float(np.sum(a)) for a in _weights(model))  # reads every page of the shard
    assert np.isfinite(total)
    touched = _rss_kib("File") - file_before
    assert 0.4 * tables_kib < touched < 0.65 * tables_kib, (touched, tables_kib)
    assert _rss_kib("Anon") - anon_before < 0.1 * tables_kib


def _weights(model) -> list[np.ndarray]:
    layer = model.layers[0]
    linears = [layer.attention.qkv, layer.attention.out.local, layer.ffn.gate_up, layer.ffn.down.local]
    return [model.embedding.local.table, model.lm_head.local.weight, *(lin.weight for lin in linears)]


def test_without_mpi4py_the_world_is_this_process(monkeypatch, llama_dir):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    monkeypatch.setattr(MpiInfo, "_local_rank", None)
    for name in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    assert (MpiInfo.get_world_size(), MpiInfo.get_cur_rank(), MpiInfo.get_local_rank()) == (1, 0, 0)
    assert (MpiInfo.getNRanks(), MpiInfo.getCurRank(), MpiInfo.getLocalRank()) == (1, 0, 0)
    with pytest.raises(ImportError, match=r"pip install 'aiotranslate\[mpi\]'"):
        Generator(llama_dir, tensor_parallel=True)
