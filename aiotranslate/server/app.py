"""`create_app`: the FastAPI app serving a set of models.

The app's lifespan owns the engines: it loads them (in helper threads) before the server accepts
connections, and closes them (cancelling what is still running) when it stops. Everything a route
needs is in the lifespan state (`context.AppState`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .._version import __version__
from . import generation, routes
from .context import AppState, ServerConfig
from .engines import close_models, open_models
from .http import MetricsMiddleware, install_error_handlers
from .metrics import Metrics


def create_app(models: Sequence[str], config: ServerConfig = ServerConfig()) -> FastAPI:
    """An app serving `models` ("PATH" or "NAME=PATH" each: see `engines`), loaded at startup."""
    if not models:
        raise ValueError("serve at least one model")
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
        served = await open_models(list(models), **config.engine_options())
        for model in served.values():
            metrics.watch(model)
        try:
            yield {"app": AppState(config, served, metrics)}
        finally:
            await close_models(served)

    # FastAPI counts the body as it arrives: a larger one is refused (413) whatever Content-Length says.
    app = FastAPI(title="aiotranslate", version=__version__, lifespan=lifespan, max_body_size=config.max_body_bytes)
    routers = (routes.router, generation.router)
    for router in routers:
        app.include_router(router)
    install_error_handlers(app, config.retry_after_s)
    endpoints = frozenset(route.path for router in routers for route in router.routes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, endpoints=endpoints)
    return app
