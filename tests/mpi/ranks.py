"""Helpers of the MPI tests: which rank this is, and `drive`, which runs a check on rank 0 against a
tensor-parallel model while the other ranks serve it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mpi4py import MPI

from aiotranslate.models.registry import load_model
from aiotranslate.runtime.mpi_driver import open_group

WORLD = MPI.COMM_WORLD
RANK, SIZE = WORLD.Get_rank(), WORLD.Get_size()


def drive(path: Path, check: Callable, prepare_follower: Callable | None = None) -> None:
    """Every rank: load `path` as a tensor-parallel group of one worker. Rank 0 calls check(model,
    reference) with the parallel model and the whole single-process model, then releases the others;
    they serve it meanwhile, after prepare_follower(their shard) when given (to inject faults)."""
    group = open_group(lambda: load_model(path), 1)
    if not group.is_leader:
        if prepare_follower is not None:
            prepare_follower(group.local_model)
        group.serve()
        return
    group.bind(0)  # this thread plays a worker
    try:
        check(group.model, load_model(path))
    finally:
        group.close()
