"""`aiotranslate embed`: one JSON array (the sentence embedding) per input line, in order.

Embeddings are the Encoder's `embed`: pooled and normalised as a sentence-transformers model says
(modules.json, 1_Pooling/config.json), else the model's pooled output.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from ..api import Encoder
from .common import add_engine_options, add_io_options, chunks, engine_options, input_lines, output_file


def register(commands) -> None:
    parser = commands.add_parser("embed", help="sentence embeddings as JSON lines")
    add_io_options(parser, "embed")
    parser.add_argument("--model", "-m", required=True, help="an encoder directory (BERT, sentence-transformers)")
    parser.add_argument("--max-batch-size", type=int, default=32, metavar="N",
                        help="sentences per batch (default: 32)")  # fmt: skip
    add_engine_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    asyncio.run(embed_all(args))


async def embed_all(args: argparse.Namespace) -> None:
    with input_lines(args) as (lines, _), output_file(args) as out:
        async with Encoder(args.model, **engine_options(args)) as encoder:
            size = max(1, args.max_batch_size)
            # One batch per worker at a time: the workers run them in parallel.
            for group in chunks(lines, size * encoder.num_encoders):
                batches = await asyncio.gather(*(encoder.embed(batch) for batch in chunks(iter(group), size)))
                out.write("".join(json.dumps(v.tolist()) + "\n" for vectors in batches for v in vectors))
                out.flush()
