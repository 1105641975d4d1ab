"""The `aiotranslate` command (also `python -m aiotranslate`).

    aiotranslate translate "How are you today?"          text, stdin or --input FILE; en-pt by default
    aiotranslate generate --chat "Tell me a joke"        tokens streamed as they come; smollm2 by default
    aiotranslate embed --model DIR --input sentences.txt JSON lines of sentence embeddings
    aiotranslate serve --model en-pt --model smollm2     the HTTP server, on 127.0.0.1:8000
    aiotranslate show-config                             build, CPU features, BLAS and threads

A failure (bad input, a model that does not load) prints one line to stderr and exits with 1.
"""

from __future__ import annotations

import argparse
import sys

from .._config import show_config
from .._version import __version__
from ..errors import ModelLoadError
from . import embed, generate, serve, translate
from .common import CliError

# What a user can cause (UnicodeDecodeError of a non-UTF-8 input is a ValueError).
ERRORS = (CliError, ModelLoadError, OSError, ValueError, TypeError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiotranslate", description="An asyncio-native Transformer inference engine.")
    parser.add_argument("--version", action="version", version=f"aiotranslate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (translate, generate, embed, serve):
        command.register(commands)
    config = commands.add_parser("show-config", help="print the build, CPU features, BLAS and threads")
    config.set_defaults(run=lambda args: show_config())
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        args.run(args)
    except ERRORS as e:
        print(f"aiotranslate {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
