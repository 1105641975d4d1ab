"""Translate a large text file, one sentence per line, with a progress bar.

Every chunk is submitted at once: the bounded queue holds back the excess (backpressure), the
workers batch what is queued, and the bar advances as chunks complete, in any order.

    python examples/batch_file.py INPUT OUTPUT [MODEL]    MODEL: $TRANSLATION_MODEL, else en-pt
"""

import asyncio
import os
import sys
from pathlib import Path

from tqdm.asyncio import tqdm

from aiotranslate import Translator

CHUNK = 256  # lines per request; each is split into batches of 32 sentences


async def main(source: str, target: str, model: str) -> None:
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    chunks = [lines[i : i + CHUNK] for i in range(0, len(lines), CHUNK)]
    translated: dict[int, list[str]] = {}
    async with Translator(model, inter_threads=2, intra_threads=1) as translator:

        async def translate(index: int, chunk: list[str]) -> None:
            kept = [line for line in chunk if line.strip()]  # blank lines stay blank
            done = iter(await translator.translate(kept, max_batch_size=32)) if kept else iter(())
            translated[index] = [next(done) if line.strip() else "" for line in chunk]

        for task in tqdm.as_completed([translate(i, c) for i, c in enumerate(chunks)], unit="chunk"):
            await task
    Path(target).write_text("".join(line + "\n" for i in range(len(chunks)) for line in translated[i]), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    model = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("TRANSLATION_MODEL", "en-pt")
    asyncio.run(main(sys.argv[1], sys.argv[2], model))
