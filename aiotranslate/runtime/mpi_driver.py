"""The tensor-parallel driver: rank 0 runs the engine, the other ranks replay its model calls.

Every rank runs the same script under `mpiexec`. `open_group` (collective) loads the model on every
rank, cuts it into that rank's shard (`tensor_parallel.shard_model`) and duplicates two communicators
per worker thread of rank 0 (`inter_threads`): `control` carries commands and their outcome, `data`
the tensors of the forward pass. Rank 0's workers call the model through `LeaderModel`; every other
rank runs `Group.serve`, one thread per worker, each looping `while (call := receive()) is not STOP`.

One forward call (encode, decode, decode_with_attention, forward) is, on every rank:
1. one frame broadcast by rank 0 (pickled: the method, its arguments, and the state operations queued
   since the last call: new_state, select, free, which need no communication of their own);
2. the call on this rank's shard, in lock-step through the parallel layers' collectives on `data`;
3. an Iallreduce of a failure flag on `control`, and on failure the ranks' error messages.

Why rank 0 drives and the others replay model calls, rather than every rank decoding the batch: the
decoding loop (search, sampling draws, cancellation, deadlines, a stream stopping) exists on rank 0
only, so nothing the other ranks do can diverge from it, and only rank 0 needs the logits (gathered
to it, not to everyone).

Failures. A failure every rank shares (an invalid input fails the same check everywhere) fails the
request on rank 0 with its own exception; the others go on. A rank failing alone: if the others finish
the call, rank 0 fails the request with that rank's error. If they are left inside a collective the
failed rank skipped, nothing can complete it: after `TIMEOUT_ENV` seconds (default 60) the failed rank
prints its error and aborts the job (MPI_Abort), rather than hanging. Idle ranks poll for the next
frame with a growing sleep, so they do not spin a core while rank 0 has no work.
"""

from __future__ import annotations

import atexit
import inspect
import os
import pickle
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .mpi import load_mpi
from .tensor_parallel import Collectives, bind, shard_model

TIMEOUT_ENV = "AIOTRANSLATE_TP_TIMEOUT"
FRAME = 4096  # bytes of a command frame: a decoding step's call fits; larger ones send the rest after
REMOTE = ("encode", "decode", "decode_with_attention", "forward")  # model methods with collectives
SPIN_S = 0.05  # a follower polls without sleeping this long after its last call (between decoding steps)
MAX_SLEEP_S = 0.005  # then sleeps between polls up to this long: the delay of a first call after idling


@dataclass
class Call:
    """One forward call, as broadcast. `state` / `creates` are state ids (the state the method takes,
    the state it returns); `ops` the state operations to apply first."""

    method: str
    args: tuple
    kwargs: dict
    state: int | None = None
    creates: int | None = None
    ops: list = field(default_factory=list)


STOP = None  # the frame that ends a follower's loop


class Endpoint:
    """One worker's link to the other ranks: its two communicators and, on every rank, the states of
    the calls it runs (by id); on rank 0, the state operations not yet sent."""

    def __init__(self, control, data) -> None:
        self.control = control
        self.collectives = Collectives(data)
        self.rank = control.Get_rank()
        self.states: dict[int, Any] = {}
        self.pending: deque = deque()  # appended by the worker and by state finalizers (any thread)
        self._ids = 0
        self._frame = np.zeros(FRAME, dtype=np.uint8)
        self._mpi = load_mpi()

    def new_id(self) -> int:
        self._ids += 1
        return self._ids

    # -- frames (control) ----------------------------------------------------------------------

    def send(self, call: Call | None) -> None:
        """Rank 0: broadcast `call` (None: STOP)."""
        data = b"" if call is None else pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)
        head = FRAME - 8
        self._frame[:8].view(np.int64)[0] = len(data)
        self._frame[8 : 8 + min(len(data), head)] = np.frombuffer(data[:head], dtype=np.uint8)
        self.control.Ibcast(self._frame, root=0).Wait()
        if len(data) > head:
            self.control.Bcast(bytearray(data[head:]), root=0)

    def receive(self) -> Call | None:
        """Ranks > 0: the next call from rank 0, polling with a growing sleep while it is idle."""
        request = self.control.Ibcast(self._frame, root=0)
        _wait(request, idle=True)
        n = int(self._frame[:8].view(np.int64)[0])
        if n == 0:
            return STOP
        head = FRAME - 8
        data = self._frame[8 : 8 + min(n, head)].tobytes()
        if n > head:
            rest = bytearray(n - head)
            self.control.Bcast(rest, root=0)
            data += bytes(rest)
        return pickle.loads(data)

    # -- outcome (control) ---------------------------------------------------------------------

    def settle(self, error: BaseException | None) -> list[tuple[int, str]]:
        """Every rank, after a call: tell whether it failed; returns the (rank, message) of every rank
        that failed (empty when none did). A rank that failed alone and whose peers never arrive (they
        wait in a collective it skipped) aborts the job after the timeout."""
        flag = np.array([error is not None], dtype=np.int32)
        failed = np.zeros(1, dtype=np.int32)
        request = self.control.Iallreduce(flag, failed, op=self._mpi.MAX)
        if error is None:
            request.Wait()
        elif not _wait(request, timeout=_timeout()):
            _abort(self.rank, error, f"the other ranks did not finish the call within {_timeout()} s")
        if not failed[0]:
            return []
        message = None if error is None else f"{type(error).__name__}: {error}"
        messages = self.control.allgather(message)
        return [(rank, m) for rank, m in enumerate(messages) if m is not None]

    def free(self) -> None:
        self.control.Free()
        self.collectives.comm.Free()


def run_call(model, endpoint: Endpoint, call: Call):
    """What every rank does for one call: apply the queued state operations (on ranks > 0: rank 0
    applied its own already), run the method on this rank's shard, keep a state it returns."""
    states = endpoint.states
    if endpoint.rank:
        for op, state_id, payload in call.ops:
            if op == "new_state":
                states[state_id] = model.new_state(*payload[0], **payload[1])
            elif op == "select":
                states[state_id].select(payload)
            else:  # free
                states.pop(state_id, None)
    args = call.args if call.state is None else (states[call.state], *call.args)
    # decode_with_attention returns the attention of a shard's first head: rank 0's is the model's.
    result = getattr(model, call.method)(*args, **call.kwargs)
    if call.creates is not None:
        states[call.creates] = result
    return result


# -- rank 0 -------------------------------------------------------------------------------------------

_current = threading.local()  # the Endpoint of the calling worker thread


class RemoteState:
    """Rank 0's handle on a state that exists on every rank under one id. `select` runs here at once
    and is queued for the others; other attributes are the local state's."""

    def __init__(self, local, state_id: int, endpoint: Endpoint):
        self._local, self._id, self._endpoint = local, state_id, endpoint
        endpoint.states[state_id] = local
        weakref.finalize(self, _release, endpoint, state_id)

    def select(self, rows) -> None:
        self._local.select(rows)
        self._endpoint.pending.append(("select", self._id, np.array(rows)))  # a copy: sent later

    def __getattr__(self, name: str):
        return getattr(self._local, name)


def _release(endpoint: Endpoint, state_id: int) -> None:
    endpoint.states.pop(state_id, None)
    endpoint.pending.append(("free", state_id, None))


class LeaderModel:
    """Rank 0's view of the sharded model: the same attributes, but the methods in `REMOTE` (and
    `new_state`) run on every rank, over the calling worker's endpoint. Its other methods would run on
    rank 0 alone and wait forever in their first collective, so they are refused."""

    def __init__(self, local):
        self._local = local

    def new_state(self, *args, **kwargs) -> RemoteState:
        endpoint = _endpoint()
        state_id = endpoint.new_id()
        local = self._local.new_state(*args, **kwargs)  # checks the arguments before anything is queued
        endpoint.pending.append(("new_state", state_id, (args, kwargs)))
        return RemoteState(local, state_id, endpoint)

    def __getattr__(self, name: str):
        value = getattr(self._local, name)
        if name in REMOTE:
            return lambda *args, **kwargs: self._call(name, args, kwargs)
        if inspect.ismethod(value):
            raise AttributeError(f"{name!r} does not run on a tensor-parallel model (only {REMOTE} and new_state)")
        return value

    def _call(self, method: str, args: tuple, kwargs: dict):
        endpoint = _endpoint()
        state = None
        if args and isinstance(args[0], RemoteState):
            state, args = args[0], args[1:]
        creates = endpoint.new_id() if method == "encode" else None
        ops = [endpoint.pending.popleft() for _ in range(len(endpoint.pending))]
        call = Call(method, args, kwargs, None if state is None else state._id, creates, ops)
        endpoint.send(call)
        try:
            result, error = run_call(self._local, endpoint, call), None
        except Exception as e:  # noqa: BLE001 - settled with the other ranks first, raised below
            result, error = None, e
        failures = endpoint.settle(error)
        if (error is not None or failures) and creates is not None:
            _release(endpoint, creates)  # the state this call made, on whichever ranks made it
        if error is not None:
            raise error
        if failures:
            rank, message = failures[0]
            raise RuntimeError(f"tensor-parallel rank {rank} failed during {method}: {message}")
        return RemoteState(result, creates, endpoint) if creates is not None else result


def _endpoint() -> Endpoint:
    endpoint = getattr(_current, "endpoint", None)
    if endpoint is None:
        raise RuntimeError("the tensor-parallel model was called from a thread that is not an engine worker")
    return endpoint


# -- the group ------------------------------------------------------------------------------------------


class Group:
    """This rank's part of a tensor-parallel job: its shard of the model and one endpoint per worker."""

    def __init__(self, model, endpoints: list[Endpoint], rank: int, size: int):
        self.local_model, self.endpoints, self.rank, self.size = model, endpoints, rank, size
        self._closed = False

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def model(self) -> LeaderModel:
        """Rank 0's model, which drives the other ranks."""
        return LeaderModel(self.local_model)

    def bind(self, index: int) -> None:
        """Make endpoint `index` the calling thread's (rank 0: a worker thread, once)."""
        endpoint = self.endpoints[index]
        _current.endpoint = endpoint
        bind(endpoint.collectives)

    def serve(self) -> None:
        """Ranks > 0: replay rank 0's calls, one thread per endpoint, until rank 0 closes."""
        threads = [
            threading.Thread(target=self._follow, args=(i,), name=f"aiotranslate-tp-{i}", daemon=True)
            for i in range(len(self.endpoints))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self._free()

    def _follow(self, index: int) -> None:
        self.bind(index)
        endpoint = self.endpoints[index]
        try:
            while (call := endpoint.receive()) is not STOP:
                try:
                    run_call(self.local_model, endpoint, call)
                    error = None
                except Exception as e:  # noqa: BLE001 - reported to rank 0 by settle
                    error = e
                endpoint.settle(error)
        except BaseException as e:  # the protocol itself broke: no rank can go on
            _abort(self.rank, e, "its loop broke")

    def close(self) -> None:
        """Rank 0, once its workers have stopped: end the other ranks' loops. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for endpoint in self.endpoints:
            endpoint.send(STOP)
        self._free()

    def _free(self) -> None:
        for endpoint in self.endpoints:
            endpoint.free()

    def statistics(self) -> dict:
        return {
            "tensor_parallel_size": self.size,
            "collective_seconds": sum(e.collectives.seconds for e in self.endpoints),
            "collective_calls": sum(e.collectives.calls for e in self.endpoints),
        }


def open_group(load: Callable[[], Any], workers: int) -> Group:
    """Collective: every rank loads the model (`load()`) and keeps its shard; then one endpoint per
    worker of rank 0 (its `workers` rules). If any rank fails to load, every rank raises."""
    world = load_mpi().COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    workers = world.bcast(workers, root=0)
    try:
        model, error = shard_model(load(), rank, size), None
    except Exception as e:  # noqa: BLE001 - shared with the other ranks, raised below
        model, error = None, e
    messages = world.allgather(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        raise RuntimeError(f"tensor-parallel rank {failed[0][0]} could not load the model: {failed[0][1]}")
    endpoints = [Endpoint(world.Dup(), world.Dup()) for _ in range(workers)]
    group = Group(model, endpoints, rank, size)
    if group.is_leader:
        atexit.register(group.close)  # also when no engine was built on it (its constructor failed)
    return group


# -- waiting --------------------------------------------------------------------------------------------


def _timeout() -> float:
    return float(os.environ.get(TIMEOUT_ENV, "60"))


def _wait(request, *, timeout: float | None = None, idle: bool = False) -> bool:
    """Poll an MPI request until it completes (True) or `timeout` seconds pass (False). With idle,
    sleep between polls once SPIN_S has passed, longer and longer up to MAX_SLEEP_S."""
    start = time.monotonic()
    sleep = 0.0
    while not request.Test():
        waited = time.monotonic() - start
        if timeout is not None and waited > timeout:
            return False
        if idle and waited > SPIN_S:
            sleep = min(MAX_SLEEP_S, max(1e-4, 2 * sleep))
        time.sleep(sleep)
    return True


def _abort(rank: int, error: BaseException, why: str) -> None:
    """End the whole job: the other ranks wait in a collective this rank will never join."""
    detail = "".join(traceback.format_exception(error))
    print(
        f"aiotranslate: tensor-parallel rank {rank} failed and {why}; aborting all ranks.\n{detail}",
        file=sys.stderr,
        flush=True,
    )
    time.sleep(1)  # MPI_Abort kills every process at once: give the launcher time to forward the message
    load_mpi().COMM_WORLD.Abort(1)
