"""The serving core's old import path, kept for callers written before the split (one release).

The core now lives in modules that each own one thing: `protocol` (wire formats, parsing, limits, error codes),
`contract` (validation), `routing` (router, circuit breaker, fallback chain), `options` (`ServeOptions`),
`service` (the service and its request path) with `lanes` (what runs in the batchers' threads) and `fastpath` /
`compiled` (the pandas-free path of a version). Import from those; nothing inside `workbench.serving` imports this.
"""

from __future__ import annotations

from .contract import RequestContract
from .options import ServeOptions
from .protocol import (
    CONTENT_TYPE_JSON,
    ENDPOINT_INVOCATIONS,
    ENDPOINT_PREDICT,
    ERROR_STATUS,
    FORMAT_DATAFRAME_RECORDS,
    FORMAT_DATAFRAME_SPLIT,
    FORMAT_RECORDS,
    Limits,
    Response,
    error_body,
    parse_payload,
)
from .routing import CircuitBreaker, Router, parse_fallback, parse_split
from .service import Service

__all__ = [
    "Service",
    "ServeOptions",
    "Response",
    "RequestContract",
    "Router",
    "CircuitBreaker",
    "Limits",
    "parse_payload",
    "parse_fallback",
    "parse_split",
    "error_body",
    "ERROR_STATUS",
    "CONTENT_TYPE_JSON",
    "FORMAT_RECORDS",
    "FORMAT_DATAFRAME_SPLIT",
    "FORMAT_DATAFRAME_RECORDS",
    "ENDPOINT_PREDICT",
    "ENDPOINT_INVOCATIONS",
]
