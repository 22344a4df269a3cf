"""Serving: a registered model behind HTTP (`workbench serve`).

    from workbench.serving import ServeOptions, Service, create_app, serve
    options = ServeOptions.from_settings(settings, "flights-late", shadow="challenger", split={"challenger": 10})
    serve(settings, options, port=5050)              # blocking; what `workbench serve` calls

Modules (framework-free unless named): `protocol` (wire formats, parsing, limits, error codes), `contract`
(validation), `routing` (router, circuit breaker, fallback chain), `options` (`ServeOptions`), `service` (the
request path, fallbacks) with `lanes` (the batch functions), `fastpath` + `compiled` (a version's pandas-free
path: compiled plan, columnar decoration), `batching` (micro-batching), `predlog` + `wal` (the prediction log:
write-ahead file, parquet, recovery), `reload` (hot reload of aliases), `model` (loading, smoke test, lookup
snapshots), `metrics` (Prometheus), `openapi`, `app` (Starlette); experiments: `experiment` (feedback, bandit
routing, stop rule), `feedback` (the /feedback wire format), `outcomes` (the outcome store), `ingest` (bulk outcomes).
"""

from .app import create_app, serve
from .batching import MicroBatcher
from .contract import RequestContract
from .model import LoadedModel, Lookups, load_version, snapshot_lookups
from .options import ServeOptions
from .predlog import PredictionLog
from .protocol import ERROR_STATUS, Response, parse_payload
from .routing import CircuitBreaker, Router
from .service import Service

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
