"""An MPI job in which rank 1 fails alone before the first collective of a call (run by
tests/test_mpi.py). Rank 0 then waits in that collective for good, so rank 1 must end the job
(MPI_Abort) once AIOTRANSLATE_TP_TIMEOUT seconds have passed rather than let it hang.

    AIOTRANSLATE_TP_TIMEOUT=2 mpiexec -n 2 python -m mpi4py tests/mpi/abort_job.py MODEL_DIR

(`-m mpi4py`: any other unhandled exception, on any rank, aborts the job too.)
"""

import sys

from mpi4py import MPI

if MPI.COMM_WORLD.Get_rank() == 0:  # an editable install rebuilds at import: rank 0 first, alone
    import aiotranslate  # noqa: F401
MPI.COMM_WORLD.Barrier()

from aiotranslate import Generator  # noqa: E402
from aiotranslate.models.decoder_only import DecoderOnlyModel  # noqa: E402


def fail(*args, **kwargs):
    raise RuntimeError("injected failure")


if MPI.COMM_WORLD.Get_rank() == 1:
    DecoderOnlyModel.decode = fail

with Generator(sys.argv[1], tensor_parallel=True, intra_threads=1) as generator:
    generator.submit_generate_batch([[1, 2, 3]], max_length=4).result()
sys.exit("rank 0 got a result although rank 1 failed")
