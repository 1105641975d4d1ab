"""`aiotranslate translate`: one output line per input line.

Lines are translated in chunks of 8 x --max-batch-size, each chunk split into sub-batches that the
workers run in parallel; empty lines stay empty. Reading from a terminal translates each line as it
is typed; reading a file shows a progress bar on stderr (when stderr is a terminal).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..api import Translator
from .common import (
    SAMPLING,
    add_engine_options,
    add_io_options,
    add_sampling_options,
    chunks,
    engine_options,
    given,
    input_lines,
    output_file,
)

DEFAULT_MODEL = "en-pt"


def register(commands) -> None:
    parser = commands.add_parser("translate", help="translate text line by line (en-pt by default)")
    add_io_options(parser, "translate")
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL,
                        help='"en-pt", "pt-en" or a model directory (default: en-pt)')  # fmt: skip
    decoding = parser.add_argument_group("decoding")
    decoding.add_argument("--beam-size", type=int, help="beam width (default: 2; 1 is greedy)")
    decoding.add_argument("--max-decoding-length", type=int, metavar="N", help="tokens per translation at most")
    decoding.add_argument("--max-batch-size", type=int, default=32, metavar="N",
                          help="sentences per batch (default: 32)")  # fmt: skip
    add_sampling_options(parser)
    add_engine_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    options = given(args, "beam_size", "max_decoding_length", *SAMPLING)
    options["max_batch_size"] = args.max_batch_size
    asyncio.run(translate_all(args, options))


async def translate_all(args: argparse.Namespace, options: dict) -> None:
    from tqdm import tqdm

    with input_lines(args) as (lines, total), output_file(args) as out:
        interactive = args.input is None and not args.text and sys.stdin.isatty()
        size = 1 if interactive else 8 * max(1, args.max_batch_size)
        async with Translator(args.model, **engine_options(args)) as translator:
            with tqdm(total=total, unit="line", disable=None if args.input else True) as progress:
                for chunk in chunks(lines, size):
                    out.write("".join(line + "\n" for line in await translate_chunk(translator, chunk, options)))
                    out.flush()
                    progress.update(len(chunk))


async def translate_chunk(translator: Translator, lines: list[str], options: dict) -> list[str]:
    """Translations of the non-blank lines, in place; blank lines give empty lines."""
    todo = [i for i, line in enumerate(lines) if line.strip()]
    out = [""] * len(lines)
    if todo:
        for i, text in zip(todo, await translator.translate([lines[i] for i in todo], **options)):
            out[i] = text
    return out
