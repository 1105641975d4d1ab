"""The compute-type pass gathers the packed weights into one block advised for huge pages
(`layers.weight_memory`): the layers compute what they computed, the arrays lie in the block,
aligned, read-only and in the pass's order, and views of other memory (a mapped file) stay put."""

import dataclasses
import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from aiotranslate.layers import FeedForward, Linear, weight_memory
from aiotranslate.layers.quantized import quantize_model
from aiotranslate.ops import aligned


def _model(seed: int) -> FeedForward:
    """Two linears as a model holds them (the pass walks our own objects' attributes)."""
    rng = np.random.default_rng(seed)

    def linear(n, k):
        return Linear(rng.standard_normal((n, k)).astype(np.float32), rng.standard_normal(n).astype(np.float32))

    return FeedForward(linear(96, 64), linear(64, 96), "gelu")


def _block(a: np.ndarray) -> mmap.mmap | None:
    """The mapping under array a, if any."""
    while a is not None and not isinstance(a, mmap.mmap):
        a = a.obj if isinstance(a, memoryview) else a.base  # np.frombuffer's base is a memoryview
    return a


@pytest.mark.parametrize("weights", ["float32", "int8", "int8_weight_only", "int8_blocks", "bfloat16"])
def test_gathered_weights_compute_the_same(weights, monkeypatch):
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    gathered = quantize_model(_model(3), weights)
    monkeypatch.setattr(weight_memory, "gather", lambda forms: None)
    scattered = quantize_model(_model(3), weights)
    assert _block(_arrays(gathered.up.weight)[0]) is not None and _block(_arrays(scattered.up.weight)[0]) is None
    np.testing.assert_array_equal(gathered(x), scattered(x))


def _arrays(weight) -> list[np.ndarray]:
    """The packed arrays of a weight (its data: values, and scales or compensation terms)."""
    return list(weight.data) if isinstance(weight.data, tuple) else [weight.data]


def test_one_block_aligned_read_only_in_pass_order():
    model = quantize_model(_model(4), "int8")
    forms = [model.up, model.down]  # the order the pass meets them
    arrays = [a for form in forms for a in _arrays(form.weight)]
    assert arrays and len({id(_block(a)) for a in arrays}) == 1
    addresses = [a.ctypes.data for a in arrays]
    assert addresses == sorted(addresses)
    assert all(address % aligned.ALIGNMENT == 0 for address in addresses)
    assert addresses[0] % weight_memory.HUGE_PAGE == 0
    assert not any(a.flags.writeable for a in arrays)


def test_views_of_other_memory_stay_put(tmp_path):
    values = np.random.default_rng(5).standard_normal((64, 32)).astype(np.float32)
    values.tofile(tmp_path / "w.bin")
    mapped = np.memmap(tmp_path / "w.bin", dtype=np.float32, mode="r", shape=(64, 32))

    @dataclasses.dataclass(frozen=True)
    class Pair:
        data: tuple
        scales: np.ndarray

    class Form:
        pass

    form = Form()
    form.weight = Pair((mapped, values.copy()), np.ones(64, np.float32))
    weight_memory.gather([form])
    assert form.weight.data[0] is mapped  # a view of the file: every process shares its pages
    assert isinstance(_block(form.weight.data[1]), mmap.mmap) and isinstance(_block(form.weight.scales), mmap.mmap)
    np.testing.assert_array_equal(form.weight.data[1], values)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps is Linux's")
def test_the_block_may_take_huge_pages():
    """Private and advised: a shared anonymous mapping would be shmem, not eligible where shmem huge
    pages are off (the common setting). Read from the kernel's own view of the mapping."""
    setting = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not setting.exists() or "[never]" in setting.read_text():
        pytest.skip("transparent huge pages are off")
    model = quantize_model(_model(6), "float32")  # held: the block lives as long as its arrays
    address = model.up.weight.data.ctypes.data
    eligible = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and ":" not in fields[0]:
            start, end = (int(v, 16) for v in fields[0].split("-"))
            inside = start <= address < end
        elif inside and fields[0] == "THPeligible:":
            eligible = fields[1] == "1"
    assert eligible is True


def test_each_forms_old_arrays_are_freed_as_it_moves():
    """The peak is the block plus one form's arrays, not twice the model: by the time a form's weight
    is replaced, the arrays of the forms moved before it are gone."""
    import weakref

    @dataclasses.dataclass(frozen=True)
    class Weight:
        data: tuple

    dead_before_each_move = []
    moved_refs: list = []

    class Form:
        def __init__(self, n):
            self._weight = Weight((np.ones((64, n), np.float32), np.zeros(n, np.float32)))
            self.refs = [weakref.ref(a) for a in self._weight.data]

        @property
        def weight(self):
            return self._weight

        @weight.setter
        def weight(self, value):
            dead_before_each_move.append(all(ref() is None for ref in moved_refs))
            self._weight = value
            moved_refs.extend(self.refs)

    forms = [Form(n) for n in (32, 48, 80)]
    weight_memory.gather(forms)
    assert dead_before_each_move == [True, True, True]
    assert all(ref() is None for form in forms for ref in form.refs)
    np.testing.assert_array_equal(forms[2].weight.data[0], np.ones((64, 80), np.float32))
