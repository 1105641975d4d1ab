"""The MPI tests run as the ranks of one job:

    mpiexec -n 2 python -m mpi4py -m pytest -q tests/mpi      (also -n 3)

which `tests/test_mpi.py` launches from the ordinary suite. Outside such a job these modules are not
collected. Every rank runs the same tests in the same order; rank 0 drives, the others serve it.
A test failing on one rank aborts the whole job at once (its report printed first), since the other
ranks would wait for it in a collective forever.

Models are built on rank 0 (the only rank that imports torch) with head counts that divide by the
world size, and their directory is shared with the others.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

LAUNCHER_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
if not any(v in os.environ for v in LAUNCHER_VARIABLES):
    collect_ignore_glob = ["*.py"]  # not a rank of an MPI job: nothing here can run
else:
    from mpi4py import MPI

    WORLD = MPI.COMM_WORLD
    RANK, SIZE = WORLD.Get_rank(), WORLD.Get_size()
    sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
    # An editable install rebuilds changed kernels at import: rank 0 first, alone (ninja runs sharing
    # one build directory corrupt its logs), then the others, who find nothing to build. If rank 0
    # cannot import, every rank fails here rather than wait for it.
    failure = None
    if RANK == 0:
        try:
            import aiotranslate  # noqa: F401
        except Exception as e:
            failure = f"{type(e).__name__}: {e}"
    failure = WORLD.bcast(failure, root=0)
    if failure is not None:
        raise ImportError(f"rank 0 could not import aiotranslate: {failure}")

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(report):
        if report.failed and SIZE > 1:
            print(f"\n[rank {RANK}] {report.nodeid} failed:\n{report.longreprtext}", file=sys.stderr, flush=True)
            WORLD.Abort(1)

    @pytest.fixture(scope="session")
    def model_dirs(tmp_path_factory) -> dict[str, Path]:
        dirs = _build_models(tmp_path_factory.mktemp("models")) if RANK == 0 else None
        return WORLD.bcast(dirs, root=0)


def _build_models(root: Path) -> dict[str, Path]:
    """Tiny random models with 6 attention heads (any world size that divides 6 splits them)."""
    import transformers
    from hf_fixtures import save, tiny_gpt2, tiny_llama
    from seq2seq_fixtures import build_seq2seq, randomize

    dirs = {name: root / name for name in ("marian", "gpt2", "llama", "llama_indivisible", "bert")}
    build_seq2seq("marian", dirs["marian"], d_model=24, encoder_attention_heads=6, decoder_attention_heads=6)
    tiny_gpt2(dirs["gpt2"], n_head=6)
    tiny_llama(dirs["llama"], num_key_value_heads=SIZE)  # grouped-query: 6 query heads over SIZE KV heads
    tiny_llama(dirs["llama_indivisible"], num_key_value_heads=3 if SIZE == 2 else 2)
    config = transformers.BertConfig(
        vocab_size=53, hidden_size=24, num_hidden_layers=2, num_attention_heads=6, intermediate_size=22
    )
    bert = transformers.BertModel(config).eval()
    randomize(bert, seed=0)
    save(bert, dirs["bert"])
    return dirs
