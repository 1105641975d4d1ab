"""What the commands share: engine and sampling options, where text comes from and goes to."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


class CliError(Exception):
    """A user error the command reports in one line."""


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--inter-threads", type=int, default=1, metavar="N",
                       help="workers running batches in parallel, sharing the weights (default: 1)")
    group.add_argument("--intra-threads", type=int, default=0, metavar="N",
                       help="threads of each worker's kernels (default: 0, the cores split between workers)")


def engine_options(args: argparse.Namespace) -> dict[str, int]:
    return {"inter_threads": args.inter_threads, "intra_threads": args.intra_threads}


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling (default: greedy decoding)")
    group.add_argument("--sampling-topk", type=int, metavar="K", help="sample from the K best tokens (0: all)")
    group.add_argument("--sampling-topp", type=float, metavar="P", help="sample from the smallest set of mass P")
    group.add_argument("--sampling-temperature", type=float, metavar="T", help="divide the logits by T")
    group.add_argument("--seed", type=int, help="seed of the sampling (reproducible output)")
    group.add_argument("--repetition-penalty", type=float, metavar="X", help="penalise tokens already present")


def given(args: argparse.Namespace, *names: str) -> dict:
    """The options among `names` that the user gave (the engine's defaults apply to the others)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


SAMPLING = ("sampling_topk", "sampling_topp", "sampling_temperature", "seed", "repetition_penalty")


def add_io_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("text", nargs="*", help=f"text to {what} (the arguments joined by spaces); "
                        "without it, each line of --input or of stdin")  # fmt: skip
    parser.add_argument("--input", "-i", type=Path, metavar="FILE", help="read lines from FILE (UTF-8)")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE instead of stdout")


@contextmanager
def input_lines(args: argparse.Namespace) -> Iterator[tuple[Iterator[str], int | None]]:
    """(lines without their newline, their number when known: a file's, for the progress bar)."""
    if args.text and args.input:
        raise CliError("give text as arguments or --input, not both")
    if args.text:
        yield iter([" ".join(args.text)]), 1
    elif args.input:
        with open(args.input, encoding="utf-8") as f:
            total = sum(1 for _ in f)
            f.seek(0)
            yield (line.rstrip("\r\n") for line in f), total
    else:
        yield (line.rstrip("\r\n") for line in sys.stdin), None


@contextmanager
def output_file(args: argparse.Namespace) -> Iterator[TextIO]:
    if args.output is None:
        yield sys.stdout
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            yield f


def chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(lines, size)):
        yield chunk
