"""HTTP plumbing of the server: the error body, the exception handlers, the metrics middleware and
cancellation of a request whose client went away.

Errors answer `{"error": {"message", "type", "code"}}` (OpenAI's shape): 400 invalid JSON or option
values the engine refuses, 422 a body that does not fit the schema, 404 an unknown model, 429 a full
queue (with Retry-After), 503 a closing server. A body over the limit gets FastAPI's own 413.

The middleware is plain ASGI (not Starlette's BaseHTTPMiddleware), so streamed responses pass
through untouched and the app still sees the client's disconnect message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ..errors import EngineClosed, QueueFull
from .metrics import Metrics

T = TypeVar("T")
ERROR_TYPES = {404: "not_found_error", 429: "overloaded_error", 503: "unavailable"}
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a response nobody is left to read


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client disconnected before its response was ready; its work was cancelled."""


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers)


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, f"invalid JSON body: {errors[0].get('ctx', {}).get('error', '')}".rstrip(": "))
        if any(e.get("loc") == ("body",) and isinstance(e.get("input"), bytes) for e in errors):
            # FastAPI parses JSON only when told so: `curl -d` alone sends a form.
            return error_response(400, "the body must be a JSON object, sent with Content-Type: application/json")
        return error_response(422, "; ".join(f"{_field(e)}: {e.get('msg')}" for e in errors))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, str(exc))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return error_response(429, f"the server is busy ({exc}); retry later", {"Retry-After": str(retry_after_s)})

    @app.exception_handler(EngineClosed)
    async def closing(request: Request, exc: EngineClosed) -> JSONResponse:
        return error_response(503, "the server is shutting down")

    @app.exception_handler(ClientGone)
    async def gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED_REQUEST)


def _field(error: dict) -> str:
    """Where a validation error is: its location inside the body ("messages.0.role")."""
    return ".".join(str(part) for part in error.get("loc", ())[1:]) or "body"


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work` while watching the connection: if the client goes away first, `work` is
    cancelled (its engine request with it) and ClientGone is raised."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this handler is cancelled (server shutdown)
        watcher.cancel()
        task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    try:
        await task  # let the cancellation reach the engine request
    except asyncio.CancelledError:
        pass
    raise ClientGone


async def _disconnect(request: Request) -> None:
    # The body was read already: the next message the ASGI server sends is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


class MetricsMiddleware:
    """Counts requests by endpoint and status, times them to the last byte of the response, and
    counts clients that disconnected before it."""

    def __init__(self, app, metrics: Metrics, endpoints: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        start = time.perf_counter()
        status, complete, gone = 500, False, False

        async def watch_send(message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        async def watch_receive():
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not complete:
                gone = True
            return message

        try:
            await self.app(scope, watch_receive, watch_send)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            if gone:
                self.metrics.disconnects.labels(endpoint).inc()
