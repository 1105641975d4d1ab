"""The static-prompt cache on its own: one read per model and prompt, least recently used out
first, and no model kept alive by it (an unloaded model's weights must be freed)."""

import gc
import weakref

from aiotranslate.api.static_prompts import StaticPromptCache


class Model:
    """The two calls the cache makes, counted."""

    def __init__(self):
        self.reads = []

    def new_state(self, batch_size, n_threads, capacity):
        return {"rows": batch_size, "capacity": capacity}

    def decode(self, state, ids):
        self.reads.append(tuple(ids[0]))


def test_each_prompt_is_read_once_and_the_oldest_leaves_first():
    cache, model = StaticPromptCache(size=2), Model()
    first = cache.state(model, (1, 2, 3), 1)
    assert cache.state(model, (1, 2, 3), 1) is first and model.reads == [(1, 2, 3)]
    cache.state(model, (4,), 1)
    cache.state(model, (1, 2, 3), 1)  # used again: now the newest
    cache.state(model, (5,), 1)  # evicts (4,)
    cache.state(model, (1, 2, 3), 1)
    cache.state(model, (4,), 1)
    assert model.reads == [(1, 2, 3), (4,), (5,), (4,)]


def test_a_model_is_not_kept_alive_and_a_new_one_reads_again():
    cache, model = StaticPromptCache(), Model()
    cache.state(model, (7, 8), 1)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
    other = Model()  # may reuse the old id: its entry must not be taken for this model's
    cache.state(other, (7, 8), 1)
    assert other.reads == [(7, 8)]
