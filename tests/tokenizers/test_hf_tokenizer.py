"""HFTokenizer (tokenizer.json) against transformers' PreTrainedTokenizerFast on tiny byte-level
BPE and WordPiece tokenizers trained here."""

from __future__ import annotations

import random

import pytest
from tokenizer_fixtures import build_bpe_dir, build_wordpiece_dir, make_sentences

from aiotranslate.errors import ModelLoadError
from aiotranslate.tokenizers import HFTokenizer, load_tokenizer

TEXTS = make_sentences(40, seed=98) + ["", "  spaced   out  ", "Unseen QQQ words", "emoji 🐸 and 東京 it 's"]


@pytest.fixture(scope="module", params=["bpe", "wordpiece"])
def tokenizer_dir(request, tmp_path_factory):
    build = build_bpe_dir if request.param == "bpe" else build_wordpiece_dir
    return build(tmp_path_factory.mktemp(request.param))


def _hf(path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(path))


def test_load_tokenizer_detects_tokenizer_json(tokenizer_dir):
    assert isinstance(load_tokenizer(tokenizer_dir), HFTokenizer)


def test_ids_and_special_tokens_match_transformers(tokenizer_dir):
    ours, hf = HFTokenizer(tokenizer_dir), _hf(tokenizer_dir)
    assert ours.encode(TEXTS) == hf(TEXTS)["input_ids"]
    assert ours.encode(TEXTS, add_special_tokens=False) == hf(TEXTS, add_special_tokens=False)["input_ids"]
    assert ours.tokenize(TEXTS[:5]) == [hf.convert_ids_to_tokens(row) for row in hf(TEXTS[:5])["input_ids"]]
    assert (ours.unk_id, ours.pad_id, ours.bos_id, ours.eos_id) == (
        hf.unk_token_id,
        hf.pad_token_id,
        hf.bos_token_id,
        hf.eos_token_id,
    )
    assert ours.special_ids == frozenset(hf.all_special_ids)
    assert ours.vocab_size == len(hf)


@pytest.mark.parametrize("skip", [True, False])
def test_decode_matches_transformers(tokenizer_dir, skip):
    ours, hf = HFTokenizer(tokenizer_dir), _hf(tokenizer_dir)
    rng = random.Random(1)
    rows = ours.encode(TEXTS) + [[rng.randrange(ours.vocab_size) for _ in range(rng.randint(0, 12))] for _ in range(30)]
    assert ours.decode(rows, skip_special_tokens=skip) == [hf.decode(r, skip_special_tokens=skip) for r in rows]


def test_token_strings_round_trip(tokenizer_dir):
    ours = HFTokenizer(tokenizer_dir)
    tokens = ours.tokenize(TEXTS[:10])
    assert ours.tokens_to_ids(tokens) == ours.encode(TEXTS[:10])
    assert ours.ids_to_tokens(ours.tokens_to_ids(tokens)) == tokens
    assert ours.tokens_to_ids([["not-a-token-at-all"]]) == [[ours.unk_id]]
    with pytest.raises(ValueError, match="out of range"):
        ours.ids_to_tokens([[ours.vocab_size + 5]])


def test_detokenizer_chunks_add_up_to_decode(tokenizer_dir):
    ours = HFTokenizer(tokenizer_dir)
    raw = HFTokenizer(tokenizer_dir)
    raw._cleanup = False  # streams, like DecodeStream, never apply the punctuation clean-up
    for row in ours.encode(TEXTS):
        stream = ours.detokenizer()
        text = "".join(c for c in (stream.step(i) for i in row) if c is not None)
        assert text == raw.decode([row])[0]


def test_bad_tokenizer_json_is_a_load_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_directory_without_tokenizer_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no tokenizer found"):
        load_tokenizer(tmp_path)
