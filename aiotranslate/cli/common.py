"""What the commands share: engine and sampling options, where text comes from and goes to."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from ..api.compute_type import NAMES
from ..backends.devices import DEVICES, resolve_device


class CliError(Exception):
    """A user error the command reports in one line."""


def device_indices(text: str) -> list[int]:
    """--device-index: "1" or "0,1" -> [1] or [0, 1]."""
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N,N,... (GPU indices), got {text!r}") from None
    if any(i < 0 for i in indices):
        raise argparse.ArgumentTypeError(f"GPU indices are >= 0, got {text!r}")
    return indices


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--device", choices=DEVICES, default="cpu",
                       help="where the model runs; auto: a CUDA GPU when CuPy sees one (default: cpu)")
    group.add_argument("--device-index", type=device_indices, default=[0], metavar="N[,N...]",
                       help="the GPUs, --inter-threads workers on each (default: 0)")
    group.add_argument("--compute-type", choices=NAMES, default="default", metavar="TYPE",
                       help=f"weight and compute type, as CTranslate2's: {', '.join(NAMES)} (default: default)")
    group.add_argument("--inter-threads", type=int, default=1, metavar="N",
                       help="workers running batches in parallel, sharing the weights (default: 1)")
    group.add_argument("--intra-threads", type=int, default=0, metavar="N",
                       help="threads of each worker's kernels (default: 0, the cores split between workers)")


def engine_options(args: argparse.Namespace) -> dict:
    """The engines' keyword arguments. The device is checked here, so that "cuda" without CuPy or
    without a GPU is the one-line error that says what to install or check."""
    try:
        resolve_device(args.device, args.device_index)
    except (ImportError, RuntimeError) as e:
        raise CliError(str(e)) from e
    return {
        "device": args.device,
        "device_index": args.device_index,
        "compute_type": args.compute_type,
        "inter_threads": args.inter_threads,
        "intra_threads": args.intra_threads,
    }


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
