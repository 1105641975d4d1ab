"""The MPI tests (`tests/mpi`) run as the ranks of `mpiexec` jobs launched from here, so the ordinary
suite stays one process with one summary: `mpiexec -n N python -m mpi4py -m pytest -q tests/mpi`
(python -m mpi4py aborts the job on an unhandled exception; the tests abort it on a failure). Every
job runs under a timeout and is killed with its ranks if it passes it. Skipped without mpi4py or
mpiexec (`pip install "aiotranslate[mpi]"`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mpi4py", reason="the MPI tests need mpi4py: pip install 'aiotranslate[mpi]'")
import aiotranslate  # noqa: E402, F401  (an editable install rebuilds here, before the ranks import it)

ROOT = Path(__file__).parents[1]
MPI_TESTS = ROOT / "tests" / "mpi"
# The mpich wheel installs mpiexec next to the interpreter, which need not be on PATH.
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install mpich, or use the site's MPI")


def mpiexec(ranks: int, *args: str, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python *args` as `ranks` ranks; past `timeout` seconds, kill every process of the job."""
    command = [MPIEXEC, "-n", str(ranks), sys.executable, *args]
    with subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **(env or {})}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    ) as job:
        try:
            out, err = job.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            out, err = job.communicate()
            pytest.fail(f"mpiexec -n {ranks} hung for {timeout} s:\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, job.returncode, out, err)


@pytest.mark.parametrize(
    ("ranks", "tests"),
    [(2, MPI_TESTS), (3, MPI_TESTS / "test_parity.py")],  # 3 ranks on 2 cores: the parity tests only
)
def test_mpi_tests_pass_on_every_rank(ranks, tests):
    job = mpiexec(ranks, "-m", "mpi4py", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests), timeout=200)
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]


def test_a_rank_failing_alone_ends_the_job_instead_of_hanging(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "models"))
    from hf_fixtures import tiny_llama

    tiny_llama(tmp_path)
    script = str(MPI_TESTS / "abort_job.py")
    job = mpiexec(2, "-m", "mpi4py", script, str(tmp_path), timeout=120, env={"AIOTRANSLATE_TP_TIMEOUT": "2"})
    assert job.returncode != 0
    assert "tensor-parallel rank 1 failed" in job.stderr and "injected failure" in job.stderr, job.stderr[-3000:]
