"""The tokenizer a GGUF file stores in its metadata, rebuilt as a `tokenizers` pipeline.

A GGUF holds no tokenizer.json, only llama.cpp's description of one (gguf-py `constants.py`,
`Keys.Tokenizer`): `tokenizer.ggml.model` (the algorithm), `.tokens` (id -> string), `.merges`
("left right", best first), `.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined,
5 unused, 6 byte), the special token ids, `.add_bos_token` / `.add_eos_token`, and `.pre`, the
name of the pre-tokenizer llama.cpp applies before BPE.

Supported: model "gpt2", the byte-level BPE of GPT-2, SmolLM, Llama 3, Qwen2... Its tokens are
stored in the byte-level alphabet (Ġ for a space), so the pipeline is `models.BPE` over the file's
vocabulary and merges, a byte-level pre-tokenizer chosen by `.pre` (the regexes llama.cpp's
`llama-vocab.cpp` uses for that name), the `decoders.ByteLevel` decoder, control tokens added as
special tokens and user-defined ones as added tokens (matched whole in text, as llama.cpp does),
and BOS/EOS added around each text only when the file says so (absent: not added, as transformers
reads byte-level files). SentencePiece-style files (model "llama": Llama 2, Mistral) are refused.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as _RustTokenizer

from ..convert.gguf import GGUFFile
from ..errors import ModelLoadError
from .hf import HFTokenizer

CONTROL, USER_DEFINED = 3, 4

# llama.cpp's splits before byte-level BPE, per `tokenizer.ggml.pre`: (every digit alone first, the
# regex), None standing for GPT-2's own regex, the one `ByteLevel(use_regex=True)` applies.
LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")  # digits one by one
GPT2, DIGITS_GPT2 = (False, None), (True, None)
PRE_TOKENIZERS = {
    "gpt2": GPT2,
    "mpt": GPT2,
    "olmo": GPT2,
    "smollm": DIGITS_GPT2,
    "starcoder": DIGITS_GPT2,
    "refact": DIGITS_GPT2,
    "command-r": DIGITS_GPT2,
    "codeshell": DIGITS_GPT2,
    "llama-bpe": (False, LLAMA3),
    "llama3": (False, LLAMA3),
    "qwen2": (False, QWEN2),
}


def _pre_tokenizer(name: str):
    digits, split = PRE_TOKENIZERS[name]
    steps = [pre_tokenizers.Digits(individual_digits=True)] if digits else []
    if split is not None:
        steps.append(pre_tokenizers.Split(Regex(split), behavior="isolated"))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=split is None))
    return pre_tokenizers.Sequence(steps)


def _post_processor(tokens: list[str], bos: int | None, eos: int | None):
    """BOS and/or EOS around each text (TemplateProcessing)."""
    head = [tokens[bos]] if bos is not None else []
    tail = [tokens[eos]] if eos is not None else []
    return processors.TemplateProcessing(
        single=" ".join([*head, "$A", *tail]),
        pair=" ".join([*head, "$A", *tail, *head, "$B:1", *tail]),
        special_tokens=[(tokens[i], i) for i in dict.fromkeys(i for i in (bos, eos) if i is not None)],
    )


def gguf_tokenizer(file: GGUFFile) -> HFTokenizer:
    """The tokenizer stored in `file`'s metadata, with its special tokens and chat template."""
    kind = file.value("tokenizer.ggml.model", str)
    if kind != "gpt2":
        raise ModelLoadError(f"{file.path}: GGUF tokenizer model {kind!r} is not supported; supported: gpt2 (byte-level BPE)")
    pre = file.value("tokenizer.ggml.pre", str, "default")
    if pre not in PRE_TOKENIZERS:
        raise ModelLoadError(
            f"{file.path}: GGUF pre-tokenizer {pre!r} is not supported; supported: {', '.join(sorted(PRE_TOKENIZERS))}"
        )
    tokens = file.value("tokenizer.ggml.tokens", list)
    types = file.value("tokenizer.ggml.token_type", list, [1] * len(tokens))
    merges = [tuple(m.split(" ")) for m in file.value("tokenizer.ggml.merges", list)]
    if len(types) != len(tokens) or any(len(m) != 2 for m in merges):
        raise ModelLoadError(f"{file.path}: inconsistent tokenizer.ggml.token_type or merges")

    tok = _RustTokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = _pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, k in zip(tokens, types) if k == CONTROL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t, k in zip(tokens, types) if k == USER_DEFINED])

    ids = {role: file.token_id(name) for role, name in (("unk", "unknown"), ("pad", "padding"), ("bos", "bos"), ("eos", "eos"))}
    bos = ids["bos"] if file.value("tokenizer.ggml.add_bos_token", bool, False) else None
    eos = ids["eos"] if file.value("tokenizer.ggml.add_eos_token", bool, False) else None
    if bos is not None or eos is not None:
        tok.post_processor = _post_processor(tokens, bos, eos)
    special = {role: None if i is None else tokens[i] for role, i in ids.items()}
    return HFTokenizer.from_backend(tok, special, file.metadata.get("tokenizer.chat_template"))
