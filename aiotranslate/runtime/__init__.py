"""The threaded runtime: admission queue, replica pool, requests. No asyncio below the API except
the loop-safe waiting of `AdmissionQueue.aput`."""

from .admission import AdmissionQueue
from .pool import BatchLimits, WorkerPool
from .request import Request

__all__ = ["AdmissionQueue", "BatchLimits", "Request", "WorkerPool"]
