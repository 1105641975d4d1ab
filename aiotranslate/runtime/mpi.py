"""MPI access for the tensor-parallel runtime, and `MpiInfo`: where this process stands in the MPI job.

mpi4py is optional (`pip install "aiotranslate[mpi]"`, which also brings the `mpich` wheel): nothing
imports it until tensor parallelism or `MpiInfo` asks, and without it `MpiInfo` answers a world of one
process. Importing mpi4py initializes MPI at thread level "multiple" (worker threads call MPI), also
outside `mpiexec`, as a world of one process.
"""

from __future__ import annotations

import os

# What launchers export as the rank among the processes of this machine: MPICH's and Intel MPI's
# hydra, Open MPI, Slurm's srun.
LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def load_mpi():
    """The `mpi4py.MPI` module, or an ImportError that says what to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            "tensor parallelism needs mpi4py and an MPI library: pip install 'aiotranslate[mpi]' "
            "(or mpi4py built against the site's MPI)"
        ) from e
    return MPI


def _world():
    """COMM_WORLD, or None without mpi4py."""
    try:
        return load_mpi().COMM_WORLD
    except ImportError:
        return None


class MpiInfo:
    """The MPI world of this process (CTranslate2's `MpiInfo`, with its camelCase names as aliases).

    Without mpi4py, or outside `mpiexec`, the world is this one process: size 1, rank 0."""

    _local_rank: int | None = None

    @staticmethod
    def get_world_size() -> int:
        world = _world()
        return 1 if world is None else world.Get_size()

    @staticmethod
    def get_cur_rank() -> int:
        world = _world()
        return 0 if world is None else world.Get_rank()

    @classmethod
    def get_local_rank(cls) -> int:
        """The rank among the processes on this machine (to pick a GPU, say). Read from the launcher's
        environment; where it exports none, computed once by a collective call, which every rank must
        then make."""
        if cls._local_rank is None:
            cls._local_rank = _local_rank()
        return cls._local_rank

    getNRanks = get_world_size
    getCurRank = get_cur_rank
    getLocalRank = get_local_rank


def _local_rank() -> int:
    for name in LOCAL_RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    world = _world()
    if world is None or world.Get_size() == 1:
        return 0
    node = world.Split_type(load_mpi().COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()
