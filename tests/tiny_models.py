"""Tiny random models with real tokenizers for the user-surface tests (CLI, server, examples, README),
built once per test session under pytest's base temp dir (no downloads):

- translator: a Marian model with a SentencePiece tokenizer (as OPUS-MT ships it);
- generator: a GPT-2 with a byte-level BPE tokenizer, 4096 positions (long streams) and a chat
  template in tokenizer_config.json;
- encoder: a BERT with a WordPiece tokenizer laid out as a sentence-transformers model (modules.json,
  1_Pooling/config.json with mean pooling, Normalize).

Their outputs are noise: they exercise the surface, not translation quality.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "models"))
sys.path.insert(0, str(Path(__file__).parent / "tokenizers"))

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@dataclass(frozen=True)
class TinyModels:
    translator: Path
    generator: Path
    encoder: Path


def tiny_models(tmp_path_factory) -> TinyModels:
    """The three models, built on the first call of the session (a marker file says they are complete)."""
    root = tmp_path_factory.getbasetemp() / "tiny-models"
    models = TinyModels(root / "marian", root / "gpt2", root / "sbert")
    if not (root / "done").exists():
        build_translator(models.translator)
        build_generator(models.generator)
        build_encoder(models.encoder)
        (root / "done").touch()
    return models


def build_translator(root: Path) -> Path:
    from seq2seq_fixtures import build_seq2seq
    from tokenizer_fixtures import build_marian_dir

    build_marian_dir(root)
    vocab = len(json.loads((root / "vocab.json").read_text()))
    return build_seq2seq(
        "marian", root, vocab_size=vocab, decoder_vocab_size=vocab, pad_token_id=vocab - 1,
        decoder_start_token_id=vocab - 1, max_position_embeddings=256,
    )  # fmt: skip


def build_generator(root: Path) -> Path:
    from hf_fixtures import tiny_gpt2
    from tokenizer_fixtures import build_bpe_dir

    build_bpe_dir(root)
    vocab = json.loads((root / "tokenizer.json").read_text())["model"]["vocab"]
    tiny_gpt2(root, vocab_size=len(vocab), n_positions=4096, bos_token_id=0, eos_token_id=2)
    config_file = root / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config_file.write_text(json.dumps(config))
    return root


def build_encoder(root: Path) -> Path:
    import torch
    import transformers
    from hf_fixtures import randomize
    from tokenizer_fixtures import build_wordpiece_dir

    build_wordpiece_dir(root)
    vocab = json.loads((root / "tokenizer.json").read_text())["model"]["vocab"]
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=18, num_hidden_layers=2, num_attention_heads=3, intermediate_size=22,
        max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    randomize(model)
    model.save_pretrained(root, safe_serialization=True)
    write_sentence_transformers_config(root, "mean", normalize=True)
    return root


def write_sentence_transformers_config(root: Path, pooling_mode, normalize: bool) -> None:
    """modules.json (Transformer, Pooling, Normalize if asked) and the Pooling module's config."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (root / "2_Normalize").mkdir(exist_ok=True)
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir(exist_ok=True)
    hidden = json.loads((root / "config.json").read_text())["hidden_size"]
    pooling = {"embedding_dimension": hidden, "pooling_mode": pooling_mode, "include_prompt": True}
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
