"""The `aiotranslate` command (also `python -m aiotranslate`)."""

from __future__ import annotations

import argparse

from ._config import show_config
from ._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiotranslate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"aiotranslate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("show-config", help="print the build, CPU features, BLAS and threads")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "show-config":
        show_config()
        return 0
    parser.print_help()
    return 0
