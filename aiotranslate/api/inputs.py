"""Turning public arguments into what the workers run: ids, sub-batches and decoding options.

Inputs come in three forms, as CTranslate2 users and text users write them:
  - text:          ["Hello world", ...]                    (needs the model's tokenizer)
  - token strings: [["▁Hello", "▁world", "</s>"], ...]     (CTranslate2's form)
  - token ids:     [[1212, 995, 0], ...]
Everything here runs on the caller's side before admission, so a bad input fails its own call with a
clear ValueError and never reaches a worker.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..decoding import DecodingOptions, truncate_input
from ..decoding.sampling import next_default_seed
from ..tokenizers import Tokenizer


@dataclass(frozen=True)
class SpecialIds:
    """The ids a model decodes with: the first decoder input, the end tokens, a forced first token,
    the unknown and BOS tokens, and the sequences it never generates (its `bad_words_ids`)."""

    start: int | None
    end: tuple[int, ...]
    forced_first: int | None = None
    unk: int | None = None
    bos: int | None = None
    banned: tuple[tuple[int, ...], ...] = ()


def to_ids(
    batch: Sequence[Any],
    tokenizer: Tokenizer | None,
    vocab_size: int,
    *,
    target: bool = False,
    name: str = "source",
) -> list[list[int]]:
    """Text, token strings or ids -> ids per example (validated against the vocabulary)."""
    if isinstance(batch, (str, bytes)):
        raise TypeError(f"{name} must be a list of examples, not a single string (wrap it in a list)")
    if not isinstance(batch, Iterable):
        raise TypeError(f"{name} must be a list of examples, got {type(batch).__name__}")
    batch = list(batch)
    if not batch:
        return []
    flat = [x for x in batch if not isinstance(x, (str, bytes, Iterable))]
    if flat:
        raise TypeError(f"{name} must be a list of examples (texts, or lists of tokens or ids), but an item is "
                        f"of type {type(flat[0]).__name__}: wrap one example's tokens in a list")
    if all(isinstance(x, str) for x in batch):
        # Target-side texts (prefixes, scored targets, end tokens) are token sequences the engine
        # completes itself: no special tokens (an end token would end a prefix).
        return _tokenizer(tokenizer, name, "text").encode(batch, target=target, add_special_tokens=not target)
    rows = [list(x) if not isinstance(x, (str, bytes)) else None for x in batch]
    if any(r is None for r in rows):
        raise TypeError(f"{name} mixes texts and token lists; use one form per call")
    if all(isinstance(t, str) for r in rows for t in r):
        return _tokenizer(tokenizer, name, "token strings").tokens_to_ids(rows, target=target)
    ids = []
    for i, row in enumerate(rows):
        if not all(isinstance(t, int) or hasattr(t, "__index__") for t in row):
            raise TypeError(f"{name}[{i}] must hold only token strings or only integer ids")
        row = [int(t) for t in row]
        bad = [t for t in row if not 0 <= t < vocab_size]
        if bad:
            raise ValueError(f"{name}[{i}] has token id {bad[0]} outside the vocabulary of {vocab_size}")
        ids.append(row)
    return ids


def source_ids(
    source: Sequence[Any], tokenizer: Tokenizer | None, model: Any, max_input_length: int, end_ids: Sequence[int]
) -> list[list[int]]:
    """Sources of a translation -> the ids its encoder reads, truncated to max_input_length, a final
    end token (one of the model's `end_ids`) kept last. A model whose sources always end with one
    token (`source_end_id`: Marian C++ models and </s>) gets it appended to any non-empty example
    that lacks it, as CTranslate2 appends </s> to the sources of models converted from Marian; texts
    have it from the tokenizer. A blank text is an empty source, as an empty list of tokens is."""
    rows = to_ids(source, tokenizer, model.vocab_size)
    # A text with nothing to translate is an empty source (its tokenizer would still add </s>).
    rows = [[] if isinstance(given, str) and not given.strip() else row for given, row in zip(source, rows)]
    end = getattr(model, "source_end_id", None)
    if end is not None:
        rows = [row + [end] if row and row[-1] != end else row for row in rows]
        end_ids = (end,)
    return [truncate_input(r, max_input_length, end_ids) for r in rows]


def source_names(source: Sequence[Any], ids: list[list[int]], tokenizer: Tokenizer) -> list[list[str]]:
    """Each source's token strings, aligned with the ids its encoder reads (`source_ids`): the
    caller's own strings where it gave token strings (an unknown word keeps its spelling), the
    vocabulary's elsewhere (texts, ids, an appended end token)."""
    names = tokenizer.ids_to_tokens(ids, target=False)
    for row, given in zip(names, source):
        if not isinstance(given, (str, bytes)) and all(isinstance(t, str) for t in given):
            given = list(given)[: len(row)]
            row[: len(given)] = given
    return names


def trimmed(rows: Sequence[Sequence[Any]], lengths: Sequence[int]) -> list[list]:
    """The first lengths[i] entries of each row of a padded batch (CTranslate2 takes arrays so)."""
    lengths = [int(n) for n in lengths]
    if len(lengths) != len(rows):
        raise ValueError(f"{len(lengths)} lengths for {len(rows)} inputs")
    rows = [list(row) for row in rows]
    if any(not 0 <= n <= len(row) for row, n in zip(rows, lengths)):
        raise ValueError(f"lengths must lie in [0, row length], got {lengths}")
    return [row[:n] for row, n in zip(rows, lengths)]


def refuse_asynchronous(asynchronous: bool) -> None:
    """CTranslate2's asynchronous=True makes a call return async results at once. Here the method is
    the coroutine, and its submit_* twin serves plain threads: False passes, True gets that advice."""
    if asynchronous:
        raise TypeError("asynchronous=True: await this method, or call its submit_* twin from a plain thread")


def _tokenizer(tokenizer: Tokenizer | None, name: str, form: str) -> Tokenizer:
    if tokenizer is None:
        raise ValueError(f"{name} is given as {form}, but this model ships no tokenizer: pass token ids")
    return tokenizer


def truncate_all(rows: list[list[int]], max_input_length: int) -> list[list[int]]:
    return [truncate_input(r, max_input_length) for r in rows]


def split_batches(lengths: Sequence[int], max_batch_size: int, batch_type: str,
                  skip: Collection[int] = ()) -> list[list[int]]:
    """Example indices (but those in `skip`) grouped into sub-batches of at most max_batch_size
    examples or tokens.

    Examples are sorted by length first (as CTranslate2 does) so each sub-batch pads little;
    callers put the results back in input order. max_batch_size 0 keeps one batch."""
    if batch_type not in ("examples", "tokens"):
        raise ValueError(f"batch_type must be 'examples' or 'tokens', got {batch_type!r}")
    if max_batch_size < 0:
        raise ValueError(f"max_batch_size must be >= 0, got {max_batch_size}")
    order = [i for i in range(len(lengths)) if i not in skip]
    if max_batch_size == 0 or len(order) <= 1:
        return [order] if order else []
    order.sort(key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = (
            len(current) + 1
            if batch_type == "examples"
            else max(longest, lengths[i]) * (len(current) + 1)  # padded tokens of the sub-batch
        )
        if current and size > max_batch_size:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    batches.append(current)
    return batches


def decoding_options(
    special: SpecialIds,
    tokenizer: Tokenizer | None,
    vocab_size: int,
    *,
    end_token=None,
    disable_unk: bool = False,
    suppress_sequences=None,
    **fields,
) -> DecodingOptions:
    """DecodingOptions from public arguments: token strings become ids, the model's end tokens
    are the default, `disable_unk` bans the unknown token, the model's banned words are always banned
    (single tokens before the softmax, as `disable_unk`; longer ones as suppressed sequences)."""
    if end_token is None:
        end_ids = special.end
    else:
        tokens = [end_token] if isinstance(end_token, (str, int)) else list(end_token)
        end_ids = tuple(to_ids([tokens], tokenizer, vocab_size, target=True, name="end_token")[0])
    disable = tuple(s[0] for s in special.banned if len(s) == 1)
    if disable_unk:
        if special.unk is None:
            raise ValueError("disable_unk=True, but this model has no unknown token")
        disable += (special.unk,)
    suppress = tuple(s for s in special.banned if len(s) > 1)
    if suppress_sequences:
        suppress += tuple(
            tuple(s) for s in to_ids(suppress_sequences, tokenizer, vocab_size, target=True, name="suppress_sequences")
        )
    options = DecodingOptions(end_ids=end_ids, disable_ids=disable, suppress_sequences=suppress, **fields)
    if options.is_sampling and options.seed is None:
        options = replace(options, seed=next_default_seed())
    return options
