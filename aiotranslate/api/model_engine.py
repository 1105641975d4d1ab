"""`ModelEngine`: an `Engine` with a loaded model, the constructor the three public classes share
and the model's lifecycle (`unload_model` / `load_model` / `model_is_loaded`, CTranslate2's names).

Unloading stops admitting requests, waits until every admitted request has finished (queued ones
still run), then drops this engine's references to the weights so their memory can be freed;
`to_cpu=True` keeps them aside instead (on a CPU engine that is RAM already) for a fast
`load_model()`. While unloaded, a request fails with `ModelNotLoaded` before it is queued, and the
workers stay up. `load_model()` reads the model again with the constructor's arguments.
On a GPU, unloading frees the weights' GPU copies and the CuPy memory pools either way (to_cpu keeps
the host model, which `load_model()` copies back to the GPUs); so does closing the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from ..runtime import BatchLimits, Request
from ..errors import ModelNotLoaded
from .bulk import BulkResults, read_size
from .engine import Engine
from .loading import LoadedModel, open_model


class ModelEngine(Engine):
    """Translator, Generator and Encoder: load the model once, then start the workers over it.
    Subclasses name their threads (`_thread_name`) and provide `_run_batch`."""

    _thread_name = "engine"

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cpu",
        *,
        device_index: int | Sequence[int] = 0,
        compute_type: str = "default",
        inter_threads: int = 1,
        intra_threads: int = 0,
        max_queued_batches: int = 0,
        max_queued_tokens: int = 0,
        tensor_parallel: bool = False,
        flash_attention: bool = False,
        files: dict | None = None,
        batch_window: float = 0.001,
    ) -> None:
        # CTranslate2's flash_attention picks its fused attention kernel on CUDA; ours is fused on
        # every device, so the flag changes nothing. Its `files` (a model read from memory) is not built.
        if files is not None:
            raise ValueError("files (model files from memory) is not supported: pass a model directory")
        self.flash_attention = bool(flash_attention)
        self.tensor_parallel = bool(tensor_parallel)
        self._current: LoadedModel | None = open_model(
            model_path, device, compute_type, tensor_parallel, inter_threads, device_index
        )
        self._reload_args = (model_path, device, compute_type, device_index)
        self._cpu_copy: LoadedModel | None = None
        self._lifecycle = threading.Condition()  # guards _current, _admitting and _admitted
        self._admitting = True
        self._admitted = 0  # requests admitted and not yet finished: what unload_model waits for
        self.device, self.device_index = self._current.device, device_index
        self.compute_type = self._current.compute_type
        self.quantization = self._current.quantization  # the scheme behind compute_type, in words
        self.model_path = str(model_path)
        super().__init__(
            device_indices=self._current.device_indices if self.device == "cuda" else (),
            inter_threads=inter_threads,
            intra_threads=intra_threads,
            max_queued_batches=max_queued_batches,
            max_queued_tokens=max_queued_tokens,
            limits=BatchLimits(max_examples=64, batch_window=batch_window),
            parallel=self._current.parallel,
            name=f"aiotranslate-{self._thread_name}",
        )

    @property
    def _loaded(self) -> LoadedModel:
        loaded = self._current
        if loaded is None:
            raise self._not_loaded()
        return loaded

    def _not_loaded(self) -> ModelNotLoaded:
        return ModelNotLoaded(f"the model of this {type(self).__name__} is unloaded: call load_model() first")

    def _model(self, context):
        """The model a worker runs: its device's copy (shared by that device's workers)."""
        return self._loaded.replica(context.place.device_index)

    @property
    def tokenizer(self):
        return self._loaded.tokenizer

    def _bulk(self, build, sources: list, max_batch_size: int, batch_type: str, read_batch_size: int = 0) -> BulkResults:
        """The results of `build(*columns)` over chunks of the zipped `sources` (see `bulk.py`)."""
        chunk_size = read_size(max_batch_size, read_batch_size)
        return BulkResults(self, build, sources, chunk_size=chunk_size, batch_type=batch_type)

    # -- admission bookkeeping ------------------------------------------------------------------

    def _admit(self, request: Request) -> None:
        """Count the request until it finishes, or refuse it while the model is (being) unloaded."""
        with self._lifecycle:
            if not self._admitting:
                raise self._not_loaded()
            self._admitted += 1
        request.future.add_done_callback(self._finished)

    def _finished(self, _future) -> None:
        with self._lifecycle:
            self._admitted -= 1
            if not self._admitted:
                self._lifecycle.notify_all()

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def model_is_loaded(self) -> bool:
        return self._current is not None

    def unload_model(self, to_cpu: bool = False) -> None:
        """Wait for the admitted requests to finish, then release the model (or with to_cpu keep it
        in host memory for a fast `load_model`). Blocks the calling thread: from a coroutine, run it
        with `await asyncio.to_thread(engine.unload_model)`."""
        if self._parallel is not None:
            raise ValueError("unload_model is not supported with tensor_parallel=True")
        with self._lifecycle:
            if self._current is None:
                return
            self._admitting = False
            while self._admitted:
                self._lifecycle.wait()
            self._cpu_copy = self._current if to_cpu else None
            self._current.release()  # the GPU copies and the CuPy pools (nothing on a CPU engine)
            self._current = None

    def load_model(self, keep_cache: bool = False) -> None:
        """Load the model back (from the host copy `unload_model(to_cpu=True)` kept, else from its
        files); keep_cache keeps that host copy for the next unload. A no-op when loaded."""
        with self._lifecycle:
            if self._current is not None:
                return
            loaded = self._cpu_copy
            if loaded is None:
                model_path, device, compute_type, device_index = self._reload_args
                loaded = open_model(model_path, device, compute_type, False, self.inter_threads, device_index)
            loaded.to_devices()  # back to the GPUs after unload_model(to_cpu=True)
            self._cpu_copy = loaded if keep_cache else None
            self._current = loaded
            self._admitting = True

    def _release_model(self) -> None:
        with self._lifecycle:
            for loaded in (self._current, self._cpu_copy):
                if loaded is not None:
                    loaded.release()
