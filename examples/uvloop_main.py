"""The application picks the event loop, aiotranslate never does: here uvloop, with `uvloop.run`.
Concurrent `translate` calls are batched together by the engine.

    python examples/uvloop_main.py [MODEL]            MODEL: $TRANSLATION_MODEL, else en-pt
"""

import asyncio
import os
import sys

import uvloop

from aiotranslate import Translator

SENTENCES = ["Good morning!", "Where is the train station?", "The weather is lovely today.", "Thank you very much."]


async def main(model: str) -> None:
    async with Translator(model) as translator:
        translations = await asyncio.gather(*(translator.translate(s) for s in SENTENCES))
        for source, target in zip(SENTENCES, translations):
            print(f"{source} -> {target}")


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TRANSLATION_MODEL", "en-pt")))
