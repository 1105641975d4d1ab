"""`Encoder.embed`: sentence embeddings equal sentence-transformers' own on the same directory, for
every pooling mode it writes (new and legacy config keys), with and without Normalize; a plain
encoder directory embeds as its pooled output."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from aiotranslate import Encoder
from aiotranslate.errors import ModelLoadError

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_models import tiny_models, write_sentence_transformers_config  # noqa: E402
from tokenizer_fixtures import make_sentences  # noqa: E402

TEXTS = make_sentences(5, seed=11)


@pytest.fixture(scope="module")
def sbert_dir(tmp_path_factory):
    return tiny_models(tmp_path_factory).encoder


def sentence_transformers_embed(directory: Path) -> np.ndarray:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(str(directory), device="cpu")
    return model.encode(TEXTS, convert_to_numpy=True)


@pytest.mark.parametrize(
    "pooling, normalize",
    [("mean", True), (["cls", "max"], False), ("mean_sqrt_len_tokens", True), ("weightedmean", False),
     ("lasttoken", False), ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, True)],
)  # fmt: skip
async def test_embed_matches_sentence_transformers(sbert_dir, tmp_path, pooling, normalize):
    directory = tmp_path / "model"
    shutil.copytree(sbert_dir, directory)
    shutil.rmtree(directory / "2_Normalize")
    write_sentence_transformers_config(directory, pooling, normalize)
    if isinstance(pooling, dict):  # the legacy boolean keys, as older sentence-transformers wrote them
        (directory / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 18, **pooling}))
    async with Encoder(directory, intra_threads=1) as encoder:
        ours = await encoder.embed(TEXTS)
        assert np.array_equal(await encoder.embed_nowait(TEXTS), ours)
    np.testing.assert_allclose(ours, sentence_transformers_embed(directory), atol=1e-5)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


async def test_plain_encoder_embeds_as_its_pooled_output(sbert_dir, tmp_path):
    directory = tmp_path / "plain"
    shutil.copytree(sbert_dir, directory, ignore=shutil.ignore_patterns("modules.json", "1_Pooling", "2_Normalize"))
    async with Encoder(directory, intra_threads=1) as encoder:
        embeddings = await encoder.embed(TEXTS[:2])
        out = await encoder.forward_batch(TEXTS[:2])
    assert np.array_equal(embeddings, out.pooler_output)


def test_unsupported_sentence_transformers_modules_are_refused(sbert_dir, tmp_path):
    directory = tmp_path / "dense"
    shutil.copytree(sbert_dir, directory)
    modules = json.loads((directory / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (directory / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelLoadError, match="Dense"):
        Encoder(directory)
