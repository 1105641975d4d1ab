"""No asyncio at all: a plain script whose threads share one Translator through the futures API.
`submit_*` returns a concurrent.futures.Future; the engine batches what the threads submit.

    python examples/threads.py [MODEL]                MODEL: $TRANSLATION_MODEL, else en-pt
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from aiotranslate import Translator

SENTENCES = ["I like reading.", "The shop opens at nine.", "How much does it cost?", "See you tomorrow!"] * 2


def main(model: str) -> None:
    with Translator(model, inter_threads=2, intra_threads=1) as translator:

        def translate(sentence: str) -> str:
            return translator.submit_translate([sentence]).result()[0]  # blocks this thread only

        with ThreadPoolExecutor(max_workers=4) as pool:
            for source, target in zip(SENTENCES, pool.map(translate, SENTENCES)):
                print(f"{source} -> {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TRANSLATION_MODEL", "en-pt"))
