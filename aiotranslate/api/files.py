"""Text files in, text files out: `translate_file` and `score_file` (CTranslate2's names, output
formats and `ExecutionStats`), streamed line by line over the bulk path (`bulk.py`).

A line becomes an example by the first rule that applies: the caller's tokenize function; the
model's tokenizer (the text goes in as is, the output is detokenized text); else a whitespace
split (tokens that are all integers are read as ids: a model without a tokenizer takes ids), and
outputs are joined by spaces. An empty line is not sent to the model: it gives an empty output line
(one per hypothesis). Memory stays constant: lines are read a chunk ahead and written in order.

The job runs on a thread of its own (file reading, tokenize functions and writing stay off the
event loop); the coroutine waits for it and stops it when cancelled.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .bulk import BulkResults

Tokenize = Callable[[str], Sequence[str]]
Detokenize = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class ExecutionStats:
    """What a file call did: the tokens it produced (best hypothesis) or scored, the examples
    (lines) it wrote, and its wall time."""

    num_tokens: int
    num_examples: int
    total_time_in_ms: float


@dataclass(frozen=True)
class TextCodec:
    """One model's rules for turning lines into examples and token lists into lines."""

    tokenizer: Any
    source_tokenize_fn: Tokenize | None = None
    target_tokenize_fn: Tokenize | None = None
    target_detokenize_fn: Detokenize | None = None

    def example(self, line: str, *, target: bool) -> str | list:
        """The example of one line (newline stripped); falsy when the line is empty."""
        tokenize = self.target_tokenize_fn if target else self.source_tokenize_fn
        if tokenize is not None:
            return list(tokenize(line))
        if self.tokenizer is not None:
            return line if line.strip() else ""
        tokens = line.split()
        return [int(t) for t in tokens] if all(_is_int(t) for t in tokens) else tokens

    def text(self, tokens: Sequence) -> str:
        """A line of target tokens (token strings, or ids for a model without a tokenizer)."""
        if self.target_detokenize_fn is not None:
            return self.target_detokenize_fn(tokens)
        if self.tokenizer is not None:
            return self.tokenizer.decode(self.tokenizer.tokens_to_ids([tokens], target=True), target=True)[0]
        return " ".join(map(str, tokens))


def _is_int(token: str) -> bool:
    return token.isdigit() or (token[:1] == "-" and token[1:].isdigit())


class FileJob:
    """Read rows of lines from `inputs` (one file per column, each line made an example by
    `columns[i]`), run them through `bulk(rows)`, and write `format(row, result)` lines in order.
    A row with one of its first `required` examples empty is not run: it writes `empty_lines`.

    `run()` does it all on the calling thread; `start()` on a new one (a concurrent Future), and
    `stop()` (any thread) cancels what is in flight and ends it."""

    def __init__(
        self,
        bulk: Callable[[Iterator[tuple]], BulkResults],
        inputs: list[str | Path],
        columns: list[Callable[[str], Any]],
        output_path: str | Path,
        format: Callable[[tuple, Any], tuple[list[str], int]],
        *,
        required: int,
        empty_lines: int = 1,
        progress: bool | None = None,
    ) -> None:
        self._bulk = bulk
        self._inputs = [Path(p) for p in inputs]
        self._columns = columns
        self._output_path = Path(output_path)
        self._format = format
        self._required = required
        self._empty_lines = empty_lines
        self._progress = sys.stderr.isatty() if progress is None else progress
        self._results: BulkResults | None = None
        self._stopped = threading.Event()
        for path in self._inputs:
            if not path.is_file():
                raise FileNotFoundError(f"no such input file: {path}")

    def start(self) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()

        def work():
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self.run())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

        threading.Thread(target=work, name="aiotranslate-file", daemon=True).start()
        return future

    def stop(self) -> None:
        self._stopped.set()
        if self._results is not None:
            self._results.cancel()

    async def run_async(self) -> ExecutionStats:
        future = self.start()
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self.stop()
            raise

    def run(self) -> ExecutionStats:
        start = time.perf_counter()
        pending: collections.deque[tuple[int, tuple]] = collections.deque()  # (empty lines before, row) read
        trailing = [0]  # empty lines after the last row
        tokens = examples = 0
        with ExitStack() as stack:
            files = [stack.enter_context(p.open(encoding="utf-8", newline="")) for p in self._inputs]
            out = stack.enter_context(self._output_path.open("w", encoding="utf-8", newline="\n"))
            bar = stack.enter_context(tqdm(unit=" lines", file=sys.stderr, disable=not self._progress))
            self._results = results = stack.enter_context(self._bulk(self._rows(files, pending, trailing)))

            for result in results:
                if self._stopped.is_set():
                    raise concurrent.futures.CancelledError()
                gap, row = pending.popleft()
                lines, n_tokens = self._format(row, result)
                out.write("\n" * (gap * self._empty_lines))
                out.writelines(line + "\n" for line in lines)
                tokens += n_tokens
                examples += gap + 1
                bar.update(gap + 1)
            out.write("\n" * (trailing[0] * self._empty_lines))
            examples += trailing[0]
            bar.update(trailing[0])
        return ExecutionStats(tokens, examples, (time.perf_counter() - start) * 1e3)

    def _rows(self, files: list, pending: collections.deque, trailing: list[int]) -> Iterator[tuple]:
        """The rows of examples with no empty one, each also queued for the writer with the
        count of empty rows before it (the bulk call reads at most a few chunks ahead)."""
        empty = 0
        for lines in _zip_lines(files, self._inputs):
            row = tuple(column(line) for column, line in zip(self._columns, lines))
            if not all(row[: self._required]):  # after them, an empty line is an absent example (a prefix)
                empty += 1
                continue
            pending.append((empty, row))
            empty = 0
            yield row
        trailing[0] = empty


def _zip_lines(files: list, paths: list[Path]) -> Iterator[list[str]]:
    while True:
        lines = [f.readline() for f in files]
        ended = [not line for line in lines]
        if all(ended):
            return
        if any(ended):
            raise ValueError(f"{' and '.join(map(str, paths))} do not have the same number of lines")
        yield [line.rstrip("\r\n") for line in lines]


def by_rows(build: Callable, width: int) -> Callable[[list[tuple]], Any]:
    """A request builder over columns (build(source, target, ...)) made to take a chunk of rows."""

    def build_rows(rows: list[tuple]):
        return build(*([list(c) for c in zip(*rows)] if rows else [[] for _ in range(width)]))

    return build_rows


def translate_job(
    translator, source_path, output_path, target_path=None, *, max_batch_size: int = 32, read_batch_size: int = 0,
    batch_type: str = "examples", with_scores: bool = False, source_tokenize_fn: Tokenize | None = None,
    target_tokenize_fn: Tokenize | None = None, target_detokenize_fn: Detokenize | None = None,
    progress: bool | None = None, **options,
) -> FileJob:  # fmt: skip
    """`Translator.translate_file`: a line per hypothesis, `score ||| text` with with_scores."""
    codec = TextCodec(translator.tokenizer, source_tokenize_fn, target_tokenize_fn, target_detokenize_fn)
    if with_scores:
        options["return_scores"] = True

    def build(source, target_prefix=None):
        return translator._translate_requests(
            "tokens", source, target_prefix, max_batch_size=max_batch_size, batch_type=batch_type, **options
        )

    def format(row, result) -> tuple[list[str], int]:
        hypotheses = result.hypotheses
        lines = [codec.text(h) for h in hypotheses]
        if with_scores:
            lines = [f"{score:g} ||| {line}" for score, line in zip(result.scores, lines)]
        return lines, len(hypotheses[0]) if hypotheses else 0

    inputs, columns = [source_path], [lambda line: codec.example(line, target=False)]
    if target_path is not None:
        inputs.append(target_path)
        columns.append(lambda line: codec.example(line, target=True))
    width = len(inputs)
    return FileJob(
        lambda rows: translator._bulk(by_rows(build, width), [rows], max_batch_size, batch_type, read_batch_size),
        inputs, columns, output_path, format, required=1,
        empty_lines=options.get("num_hypotheses", 1), progress=progress,
    )  # fmt: skip


def score_job(
    engine, build: Callable, inputs: list, codec: TextCodec, output_path, *, max_batch_size: int = 32,
    read_batch_size: int = 0, batch_type: str = "examples", with_tokens_score: bool = False,
    progress: bool | None = None,
) -> FileJob:  # fmt: skip
    """`score_file`: `mean log-prob ||| target` per line (the mean over the scored tokens, the end
    token among them for a translator), then ` ||| ` and each token's score with with_tokens_score.
    The last input column is the scored text."""

    def format(row, result) -> tuple[list[str], int]:
        log_probs = result.log_probs
        target = row[-1] if isinstance(row[-1], str) else codec.text(row[-1])
        line = f"{sum(log_probs) / max(1, len(log_probs)):g} ||| {target}"
        if with_tokens_score:
            line += " ||| " + " ".join(f"{x:g}" for x in log_probs)
        return [line], len(log_probs)

    width = len(inputs)
    columns = [lambda line, target=(i == width - 1 and width > 1): codec.example(line, target=target)
               for i in range(width)]  # fmt: skip
    return FileJob(
        lambda rows: engine._bulk(by_rows(build, width), [rows], max_batch_size, batch_type, read_batch_size),
        inputs, columns, output_path, format, required=width, progress=progress,
    )  # fmt: skip
