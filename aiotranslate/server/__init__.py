"""The HTTP server (extra `server`: FastAPI, uvicorn, prometheus-client).

    app = create_app(["en-pt", "chat=smollm2"], ServerConfig(inter_threads=2))
    uvicorn.run(app, host="127.0.0.1", port=8000)          # or: aiotranslate serve --model en-pt

Routes: `POST /v1/translations`, OpenAI-compatible `POST /v1/completions` and
`POST /v1/chat/completions` (Server-Sent Events with "stream": true), `POST /v1/embeddings`,
`GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus).

    app.py         the app factory: lifespan owning the engines, middlewares, routers
    engines.py     model specs, the engine of each model, loading off the loop
    context.py     configuration and lifespan state seen by the routes, shared checks
    routes.py      translations, embeddings, models, health, metrics
    generation.py  completions and chat completions, streamed or not
    schemas.py     request bodies
    http.py        errors, body limit and metrics middlewares, cancellation on disconnect
    metrics.py     the Prometheus registry of one app
"""

from .app import create_app
from .context import ServerConfig

__all__ = ["ServerConfig", "create_app"]
