"""Stream a generation token by token, and stop early: leaving the `async with` block stops the
decoding at its next step, so the worker is free for other requests at once.

    python examples/streaming.py [MODEL] [PROMPT]     MODEL: $GENERATION_MODEL, else smollm2
"""

import asyncio
import os
import sys

from aiotranslate import Generator


async def main(model: str, prompt: str) -> None:
    async with Generator(model) as generator:
        async with generator.generate_tokens(prompt, max_length=128) as steps:
            async for step in steps:
                print(step.text, end="", flush=True)
                if "\n" in step.text:  # the first line is enough: stop generating
                    break
    print()


if __name__ == "__main__":
    model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GENERATION_MODEL", "smollm2")
    prompt = sys.argv[2] if len(sys.argv) > 2 else "The three best things about Lisbon are"
    asyncio.run(main(model, prompt))
