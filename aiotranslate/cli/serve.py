"""`aiotranslate serve`: the HTTP server (`aiotranslate.server`) under uvicorn.

It listens on 127.0.0.1 unless --host says otherwise: exposing it to a network is a decision.
"""

from __future__ import annotations

import argparse
import importlib.util

from .common import CliError, add_engine_options, engine_options

SERVER_EXTRA_HINT = "pip install 'aiotranslate[server]'"


def register(commands) -> None:
    parser = commands.add_parser("serve", help="serve models over HTTP (OpenAI-compatible generation)")
    parser.add_argument("--model", "-m", action="append", metavar="[NAME=]PATH",
                        help="a model to serve (repeat for several; default: en-pt)")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--uvloop", action="store_true", help="run the event loop on uvloop")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-queued-batches", type=int, default=0, metavar="N",
                        help="queued batches per model before answering 429 (default: 0, 4 per worker)")  # fmt: skip
    limits.add_argument("--max-tokens", type=int, default=2048, metavar="N", help="tokens one request may ask for")
    limits.add_argument("--max-body-bytes", type=int, default=1 << 20, metavar="N", help="request body size limit")
    add_engine_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise CliError(f"serve needs {', '.join(missing)}: {SERVER_EXTRA_HINT}")
    if args.uvloop and importlib.util.find_spec("uvloop") is None:
        raise CliError("--uvloop needs uvloop: pip install uvloop")
    import uvicorn

    from ..server import ServerConfig, create_app

    engine = engine_options(args)
    engine["device_index"] = tuple(engine["device_index"])  # a frozen config
    config = ServerConfig(
        max_body_bytes=args.max_body_bytes,
        max_tokens=args.max_tokens,
        max_queued_batches=args.max_queued_batches,
        **engine,
    )
    app = create_app(args.model or ["en-pt"], config)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop" if args.uvloop else "asyncio", ws="none",
                log_level=args.log_level)  # fmt: skip
