"""The engines' numpy allocator (native/buffer_cache.h through _buffers): large blocks freed are
reused for allocations of the same size, on any thread, with C semantics (calloc zeroes, realloc
keeps the contents), within its byte cap; small blocks bypass it; engine workers allocate with it."""

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from numpy._core.multiarray import get_handler_name

from aiotranslate import Encoder
from aiotranslate._native import load

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from encoder_fixtures import build_encoder  # noqa: E402

buffers = load("_buffers")
pytestmark = pytest.mark.skipif(buffers is None, reason="native kernels not built")
BIG = 1 << 20  # float32 elements: 4 MiB, above the cache's minimum block


def on_thread(fn):
    """fn() on a new thread that installed the cache (its context only), and its result."""
    out = {}

    def run():
        buffers.install()
        out["value"] = fn()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out["value"]


def test_only_the_installing_thread_allocates_through_it():
    assert get_handler_name(on_thread(lambda: np.empty(BIG, np.float32))) == buffers.HANDLER_NAME
    assert get_handler_name(np.empty(BIG, np.float32)) != buffers.HANDLER_NAME


def test_freed_blocks_are_reused_with_c_semantics():
    buffers.clear()

    def work():
        a = np.full(BIG, 7.0, np.float32)
        del a  # cached, dirty
        held = buffers.cached_bytes()
        zeros = np.zeros(BIG, np.float32)  # calloc from the cached block: zeroed
        reused = buffers.cached_bytes()
        small = np.ones(1000, np.float32)
        del small  # under the minimum: not cached
        grown = np.arange(BIG, dtype=np.float32)
        grown.resize(2 * BIG, refcheck=False)  # realloc keeps the contents
        return held, zeros, reused, grown

    held, zeros, reused, grown = on_thread(work)
    assert held >= 4 * BIG and reused == held - 4 * BIG
    assert not zeros.any()
    np.testing.assert_array_equal(grown[:BIG], np.arange(BIG, dtype=np.float32))
    del zeros, grown  # freed on this thread, into the cache
    assert buffers.cached_bytes() >= 4 * BIG
    buffers.clear()
    assert buffers.cached_bytes() == 0


def test_the_cache_keeps_at_most_its_cap():
    buffers.clear()
    blocks = on_thread(lambda: [np.empty(16 * BIG, np.float32) for _ in range(6)])  # 6 x 64 MiB
    del blocks
    assert 0 < buffers.cached_bytes() <= 256 << 20
    buffers.clear()


def test_engine_workers_allocate_through_it(tmp_path):
    with Encoder(build_encoder("bert", tmp_path), intra_threads=1) as encoder:
        out = encoder.submit_forward_batch([[2, 5, 6, 3]] * 600).result()  # 600 x 4 x hidden floats
    hidden = out.last_hidden_state
    assert get_handler_name(hidden if hidden.base is None else hidden.base) == buffers.HANDLER_NAME
