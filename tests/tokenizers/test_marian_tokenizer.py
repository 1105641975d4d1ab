"""MarianTokenizer (source.spm / target.spm + vocab.json) against transformers' MarianTokenizer on
tiny SentencePiece models trained here."""

from __future__ import annotations

import random
import warnings

import pytest
from tokenizer_fixtures import build_marian_dir, make_sentences

from aiotranslate.errors import ModelLoadError
from aiotranslate.tokenizers import MarianTokenizer, load_tokenizer

TEXTS = make_sentences(40, seed=99) + [
    "",
    "  spaced   out  ",
    ">>fra<< the frog sat",
    ">>xyz<< unknown code",
    "unseen QQQ zzz words",
    "emoji 🐸 and 東京 ümlaut",
]


def _hf_tokenizer(path):
    from transformers import MarianTokenizer as HFMarianTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses." (not used for ids)
        return HFMarianTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module", params=["shared", "separate", "byte_fallback"])
def marian_dir(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"marian_{request.param}")
    return build_marian_dir(
        root, separate_vocabs=request.param == "separate", byte_fallback=request.param == "byte_fallback"
    )


def test_load_tokenizer_detects_marian_files(marian_dir):
    assert isinstance(load_tokenizer(marian_dir), MarianTokenizer)


def test_source_and_target_ids_match_transformers(marian_dir):
    ours, hf = MarianTokenizer(marian_dir), _hf_tokenizer(marian_dir)
    assert ours.encode(TEXTS) == hf(TEXTS)["input_ids"]
    assert ours.encode(TEXTS, target=True) == hf(text_target=TEXTS)["input_ids"]
    assert ours.encode(TEXTS, add_special_tokens=False) == hf(TEXTS, add_special_tokens=False)["input_ids"]
    assert ours.eos_id == hf.eos_token_id and ours.pad_id == hf.pad_token_id and ours.unk_id == hf.unk_token_id
    assert ours.vocab_size == hf.vocab_size


def test_unknown_pieces_map_to_unk(marian_dir):
    ours = MarianTokenizer(marian_dir)
    ids = ours.encode(TEXTS)
    assert any(ours.unk_id in row for row in ids), "the fixture vocab leaves pieces out on purpose"
    assert all(row[-1] == ours.eos_id for row in ids)


@pytest.mark.parametrize("skip", [True, False])
def test_decode_matches_transformers(marian_dir, skip):
    ours, hf = MarianTokenizer(marian_dir), _hf_tokenizer(marian_dir)
    target_ids = ours.encode(TEXTS, target=True)
    rng = random.Random(0)
    # With separate vocabularies transformers knows special ids by the source vocabulary only, so it
    # would not skip the target's <pad> (last id); we skip it by name. Leave it out of the comparison.
    n_target = len(hf.target_encoder) - 1 if hf.separate_vocabs else hf.vocab_size
    target_ids += [[rng.randrange(n_target) for _ in range(rng.randint(0, 12))] for _ in range(30)]
    # Decoding generated text uses the target SentencePiece model (as CTranslate2 and transformers
    # before v5 do); transformers 5 defaults to the source model when the vocabulary is shared.
    expected = [hf.decode(row, skip_special_tokens=skip, use_source_tokenizer=False) for row in target_ids]
    assert ours.decode(target_ids, skip_special_tokens=skip) == expected


def test_token_strings_round_trip(marian_dir):
    ours = MarianTokenizer(marian_dir)
    tokens = ours.tokenize(TEXTS[:10])
    assert all(row[-1] == "</s>" for row in tokens)
    ids = ours.tokens_to_ids(tokens)
    assert ids == ours.encode(TEXTS[:10])
    known = [[t for t in row if t in ours._side(False).piece_to_id] for row in tokens]
    assert ours.ids_to_tokens(ours.tokens_to_ids(known), target=False) == known
    assert ours.tokens_to_ids([["▁not-a-piece", "</s>"]]) == [[ours.unk_id, ours.eos_id]]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        ours.ids_to_tokens([[10**6]])


def test_detokenizer_chunks_add_up_to_decode(marian_dir):
    ours = MarianTokenizer(marian_dir)
    for row in ours.encode(TEXTS, target=True):
        stream = ours.detokenizer()
        chunks = [stream.step(i) for i in row]
        assert "".join(c for c in chunks if c is not None) == ours.decode([row])[0]
        assert all(c is None or "\ufffd" not in c for c in chunks)


def test_missing_unk_token_is_a_load_error(marian_dir, tmp_path):
    for f in marian_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "vocab.json").write_text('{"</s>": 0, "<pad>": 1}')
    with pytest.raises(ModelLoadError, match="unknown token"):
        MarianTokenizer(tmp_path)
