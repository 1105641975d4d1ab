"""Prometheus metrics of one app, in its own `CollectorRegistry` (several apps in one process, as in
tests, never collide).

- `aiotranslate_queued_batches`, `aiotranslate_active_batches` (gauges, per model): read from the
  engines at scrape time;
- `aiotranslate_requests_total` (endpoint, status), `aiotranslate_request_duration_seconds`
  (endpoint; until the last byte of the response, streams included),
  `aiotranslate_client_disconnects_total` (endpoint: clients gone before their response ended):
  kept by `MetricsMiddleware`;
- `aiotranslate_time_to_first_token_seconds`, `aiotranslate_generated_tokens_total` (per model):
  kept by the generation routes.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .engines import ServedModel

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queued = Gauge("aiotranslate_queued_batches", "Batches waiting in the admission queue", ["model"], registry=r)
        self.active = Gauge("aiotranslate_active_batches", "Batches running on workers", ["model"], registry=r)
        self.requests = Counter("aiotranslate_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "aiotranslate_request_duration_seconds", "Time to the end of the response", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.disconnects = Counter(
            "aiotranslate_client_disconnects", "Clients gone before their response ended", ["endpoint"], registry=r
        )
        self.first_token = Histogram(
            "aiotranslate_time_to_first_token_seconds", "Time from admission to the first generated token",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter("aiotranslate_generated_tokens", "Tokens generated", ["model"], registry=r)

    def watch(self, model: ServedModel) -> None:
        """Export the model's queue depth and active batches (read when scraped)."""
        engine = model.engine
        self.queued.labels(model.name).set_function(lambda: engine.num_queued_batches)
        self.active.labels(model.name).set_function(lambda: engine.num_active_batches)


class TokenTimer:
    """Counts one request's generated tokens and observes its time to first token."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._first_token = metrics.first_token.labels(model)
        self._tokens = metrics.tokens.labels(model)
        self._start = time.perf_counter()
        self.count = 0

    def token(self) -> None:
        if self.count == 0:
            self._first_token.observe(time.perf_counter() - self._start)
        self.count += 1
        self._tokens.inc()
