"""Serving: a registered model behind HTTP (`workbench serve`).

    from workbench.serving import ServeOptions, Service, create_app, serve
    options = ServeOptions.from_settings(settings, "flights-late", shadow="challenger", split={"challenger": 10})
    serve(settings, options, port=5050)              # blocking; what `workbench serve` calls

Modules: `core` (framework-free: parse, validate, route, predict with budget/fallback/breaker, log),
`batching` (micro-batching), `predlog` (durable parquet prediction log), `reload` (hot reload of
aliases), `model` (loading + smoke test + lookup snapshots), `metrics` (Prometheus), `app` (Starlette).
"""

from .app import create_app, serve
from .batching import MicroBatcher
from .core import ERROR_STATUS, CircuitBreaker, RequestContract, Response, Router, ServeOptions, Service, parse_payload
from .model import LoadedModel, Lookups, load_version, snapshot_lookups
from .predlog import PredictionLog

__all__ = [
    "ServeOptions",
    "Service",
    "Response",
    "RequestContract",
    "Router",
    "CircuitBreaker",
    "ERROR_STATUS",
    "parse_payload",
    "MicroBatcher",
    "PredictionLog",
    "LoadedModel",
    "Lookups",
    "load_version",
    "snapshot_lookups",
    "create_app",
    "serve",
]
