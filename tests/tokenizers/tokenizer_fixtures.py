"""Tiny tokenizers trained offline in a temp dir: a Marian-style SentencePiece directory and
`tokenizer.json` files (byte-level BPE, WordPiece) saved through transformers, so the tests can
compare aiotranslate with transformers' own tokenizer classes on the same files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import sentencepiece
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

_WORDS = (
    "the a small green frog sat on an old stone near river water . , ! ? it 's n't "
    "Tom asked his teacher for advice today tomorrow 42 1999 café naïve über Straße "
    "maison été garçon Köln 東京 привет мир year years running runs ran quickly"
).split()


def make_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n)]


def train_spm(prefix: Path, sentences: list[str], vocab_size: int, **options) -> Path:
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        character_coverage=1.0,
        minloglevel=2,
        **options,
    )
    return Path(f"{prefix}.model")


def _spm_pieces(path: Path) -> list[str]:
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_control(i) and not sp.is_unknown(i)]


def _vocab(pieces: list[str], drop_every: int) -> dict[str, int]:
    """OPUS-MT layout: </s> 0, <unk> 1, the pieces, <pad> last. Every drop_every-th piece is left
    out so that some pieces map to <unk>."""
    vocab = {"</s>": 0, "<unk>": 1}
    for k, piece in enumerate(pieces):
        if piece not in vocab and k % drop_every != drop_every - 1:
            vocab[piece] = len(vocab)
    vocab["<pad>"] = len(vocab)
    return vocab


def build_marian_dir(root: Path, *, separate_vocabs: bool = False, byte_fallback: bool = False) -> Path:
    """source.spm / target.spm trained on different text, vocab.json (and target_vocab.json when
    separate_vocabs), tokenizer_config.json."""
    root.mkdir(parents=True, exist_ok=True)
    extra = 256 if byte_fallback else 0  # the 256 byte pieces count in the vocabulary size
    src = train_spm(root / "src", make_sentences(400, seed=1), 90 + extra, byte_fallback=byte_fallback)
    tgt = train_spm(root / "tgt", make_sentences(400, seed=2), 80 + extra, byte_fallback=byte_fallback)
    src.rename(root / "source.spm")
    tgt.rename(root / "target.spm")
    src_pieces, tgt_pieces = _spm_pieces(root / "source.spm"), _spm_pieces(root / "target.spm")
    config = {"separate_vocabs": separate_vocabs, "model_max_length": 512}
    if separate_vocabs:
        (root / "vocab.json").write_text(json.dumps(_vocab(src_pieces, 7)))
        (root / "target_vocab.json").write_text(json.dumps(_vocab(tgt_pieces, 5)))
    else:
        shared = src_pieces + [p for p in tgt_pieces if p not in src_pieces] + [">>fra<<", ">>deu<<"]
        (root / "vocab.json").write_text(json.dumps(_vocab(shared, 9)))
    (root / "tokenizer_config.json").write_text(json.dumps(config))
    return root


def build_bpe_dir(root: Path) -> Path:
    """A byte-level BPE tokenizer with BART/RoBERTa special tokens (<s> text </s>)."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(make_sentences(400, seed=3), trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(root)
    return root


def build_wordpiece_dir(root: Path) -> Path:
    """A BERT-style WordPiece tokenizer ([CLS] text [SEP], lower-casing, clean-up on decode)."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        make_sentences(400, seed=4), trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        clean_up_tokenization_spaces=True,
    )
    fast.save_pretrained(root)
    return root
