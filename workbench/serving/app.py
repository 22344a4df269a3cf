"""The HTTP adapter: Starlette on uvicorn around `service.Service`.

Why Starlette and not FastAPI: FastAPI's value is pydantic models declared in code. Our request schema is
not known in code - it is the served model's (it changes on hot reload) - and it is enforced in one
place, `contract.RequestContract`, which names problems without echoing values (FastAPI's default 422
bodies include the offending `input`). We also need the raw body (size limit while reading, our own
415/400/413 codes). What remains of FastAPI would be a layer of dependency injection and validation
per request that we would not use but would pay for on every call; Starlette is the part we use
(routing, lifespan, requests/responses), and the OpenAPI document is generated from the live model
contract instead (`openapi.py`). uvicorn runs it with uvloop and httptools when installed. The two prediction
routes skip even Starlette's request/response layer (`PredictRoutes`, the hot path); the others go through it.

Routes: POST /predict, POST /invocations (MLflow-compatible), POST /feedback (outcomes, with --feedback or
--bandit), GET /healthz, /readyz, /metrics,
/openapi.json, /docs (Swagger UI, its assets served from a package, not a CDN: works offline), and /ping, /health for MLflow clients.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..config import Settings, load_settings
from ..errors import ServingError
from . import docs_assets
from . import openapi as openapi_document
from .fastpath import snapshot_sample
from .model import snapshot_lookups
from .options import ServeOptions
from .protocol import ENDPOINT_INVOCATIONS, ENDPOINT_PREDICT, error_body
from .service import Service

__all__ = ["create_app", "app_from_environment", "serve", "OPTIONS_ENV"]

log = logging.getLogger("workbench.serving")

OPTIONS_ENV = "WORKBENCH_SERVE_OPTIONS"  # ServeOptions as JSON, for uvicorn worker processes
DRAIN_LIMIT = 64 << 20  # an oversized body is read (and discarded) up to this, then the connection closes


async def _read_body(request: Request, limit: int) -> tuple[bytes, bool]:
    """(body, too_large). Reads at most `limit` bytes into memory; beyond it, discards the rest."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_large = True
        if not too_large:
            chunks.append(chunk)
        if size > DRAIN_LIMIT:
            break
    return (b"" if too_large else b"".join(chunks)), too_large


class PredictRoutes:
    """ASGI: POST /predict and POST /invocations straight to `Service.invoke`; every other request to Starlette.

    The prediction endpoints are the hot path. Starlette's request, middleware and response objects cost about as
    much event-loop time per request as parsing and validating it, and with one event loop per worker that time
    is the throughput limit (profiled under 32 clients: the loop held the GIL for 97% of the samples). Nothing
    of what they do is needed here: `invoke` answers every error itself (4xx naming the problem, 500 on a bug),
    and the body is read with the same limit as `_read_body`."""

    def __init__(self, app: Starlette, service: Service):
        self.app = app
        self.service = service
        self.state = app.state

    async def __call__(self, scope, receive, send) -> None:
        endpoint = FAST_ROUTES.get(scope.get("path")) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        content_type = request_id = None
        declared = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        limit = self.service.options.max_body_bytes
        too_large = declared.isdigit() and int(declared) > limit
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                too_large = True
            if not too_large:
                chunks.append(chunk)
            if size > DRAIN_LIMIT:
                break
        body = b"" if too_large else chunks[0] if len(chunks) == 1 else b"".join(chunks)
        result = await self.service.invoke(endpoint, body, content_type, request_id, oversized=too_large)
        headers = [(b"content-length", str(len(result.body)).encode()), (b"content-type", result.content_type.encode())]
        if too_large:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": result.body})


FAST_ROUTES = {"/predict": ENDPOINT_PREDICT, "/invocations": ENDPOINT_INVOCATIONS}


def create_app(
    settings: Settings,
    options: ServeOptions,
    service: Service | None = None,
    load_in_background: bool = True,
    **service_kwargs,
) -> PredictRoutes:
    """The ASGI app. `service_kwargs` go to `Service` (e.g. `lookups=`, `predlog=`) when no service is given.

    load_in_background: accept connections while the models load (/healthz answers, /readyz says 503). Worker
    processes sharing a socket load first instead, so none takes requests before it can answer them."""
    service = service or Service(settings, options, **service_kwargs)

    async def predict(request: Request, endpoint: str) -> Response:
        body, too_large = await _read_body(request, service.options.max_body_bytes)
        result = await service.invoke(
            endpoint,
            body,
            request.headers.get("content-type"),
            request.headers.get("x-request-id"),
            oversized=too_large,
        )
        headers = {"connection": "close"} if too_large else None
        return Response(result.body, result.status, media_type=result.content_type, headers=headers)

    async def feedback_route(request: Request) -> Response:
        body, too_large = await _read_body(request, service.options.max_body_bytes)
        result = await service.feedback(body, request.headers.get("content-type"), oversized=too_large)
        headers = {"connection": "close"} if too_large else None
        return Response(result.body, result.status, media_type=result.content_type, headers=headers)

    async def predict_route(request: Request) -> Response:
        return await predict(request, ENDPOINT_PREDICT)

    async def invocations_route(request: Request) -> Response:
        return await predict(request, ENDPOINT_INVOCATIONS)

    def _plain(result) -> Response:
        return Response(result.body, result.status, media_type=result.content_type)

    async def healthz(request: Request) -> Response:
        return _plain(service.health())

    async def readyz(request: Request) -> Response:
        return _plain(service.readiness())

    async def metrics(request: Request) -> Response:
        return _plain(service.metrics_response())

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document.build(service))

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_assets.docs_html(f"workbench serve: {service.options.model_name}"))

    async def docs_asset(request: Request) -> Response:
        found = docs_assets.asset(request.path_params["name"])
        if found is None:
            raise HTTPException(404)
        return Response(found[0], media_type=found[1], headers={"Cache-Control": "max-age=86400"})

    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}.get(
            exc.status_code, "BAD_REQUEST"
        )
        message = {
            404: f"No route {request.url.path}; see /openapi.json.",
            405: f"Method {request.method} is not allowed on {request.url.path}; see /openapi.json.",
        }.get(exc.status_code, "Bad request.")
        service.metrics.errors.labels(code).inc()
        return Response(
            error_body(code, message),
            exc.status_code,
            media_type="application/json",
            headers=getattr(exc, "headers", None),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start(background=load_in_background)
        try:
            yield
        finally:
            await service.close()

    routes = [
        Route("/predict", predict_route, methods=["POST"]),
        Route("/invocations", invocations_route, methods=["POST"]),
        Route("/feedback", feedback_route, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/health", readyz, methods=["GET"]),
        Route("/ping", readyz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route(docs_assets.ASSETS_PATH + "/{name}", docs_asset, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.service = service
    return PredictRoutes(app, service)


def app_from_environment() -> PredictRoutes:
    """uvicorn factory for worker processes: settings from the environment, options from OPTIONS_ENV."""
    text = os.environ.get(OPTIONS_ENV)
    if not text:
        raise ServingError(f"{OPTIONS_ENV} is not set: start worker processes with `workbench serve`.")
    return create_app(load_settings(), ServeOptions.from_json(text), load_in_background=False)


def specs_of(settings: Settings, options: ServeOptions) -> list:
    """The ModelSpec of every alias served (checks that each alias exists)."""
    from .. import registry
    from ..model_contract import ModelSpec

    specs = []
    for alias in [options.alias, *options.split, *([options.shadow] if options.shadow else [])]:
        version = registry.get_version(options.model_name, alias, settings)
        specs.append(ModelSpec.load(registry.model_uri(options.model_name, version.version), settings))
    return specs


def feature_functions_of(settings: Settings, options: ServeOptions) -> list[str]:
    """The feature functions of every alias served (checks that each alias exists)."""
    return [spec.feature_function for spec in specs_of(settings, options)]


def serve(
    settings: Settings,
    options: ServeOptions,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """Run the service until SIGINT/SIGTERM (graceful: pending requests answered, the log flushed)."""
    import uvicorn

    started = time.time()
    specs = specs_of(settings, options)
    written = snapshot_lookups(settings, [spec.feature_function for spec in specs])
    if written:
        log.info("Lookup snapshot written for %s under %s", ", ".join(written), settings.path("serving_cache_dir"))
    samples = [snapshot_sample(settings, s) for s in {(s.dataset, s.raw_columns): s for s in specs}.values()]
    sampled = [p for p in samples if p is not None and p.stat().st_mtime >= started]  # written just now (Spark)
    if written or sampled:
        from ..spark import stop_spark

        stop_spark()  # the workers read the snapshots; no JVM stays behind for serving
    host = host or settings.serving_host
    port = port or settings.serving_port
    common = dict(
        host=host, port=port, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=30
    )
    if workers <= 1:
        uvicorn.run(create_app(settings, options), **common)
        return
    metrics_dir = tempfile.mkdtemp(prefix="workbench-metrics-")
    os.environ[OPTIONS_ENV] = options.to_json()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("workbench.serving.app:app_from_environment", factory=True, workers=workers, **common)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
