"""The prediction routes' ASGI adapter (`app.PredictRoutes`, in front of Starlette) over real HTTP (uvicorn):
it reads bodies with the same limit as Starlette's path did, answers what it takes with the service's codes and
hands every other method and route to Starlette. The server has no model (never ready), so no Spark or MLflow
run is needed: what is checked is what the adapter does before and after `Service.invoke`."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from .notebook_factory import make_home

LIMIT = 4096


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def base(tmp_path):
    import uvicorn

    from workbench.serving.app import create_app
    from workbench.serving.options import ServeOptions

    settings = make_home(tmp_path).with_overrides(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", mlflow_artifacts=str(tmp_path / "mlartifacts")
    )
    options = ServeOptions(model_name="no-such-model", reload_interval=0, log_predictions=False, max_body_bytes=LIMIT)
    app = create_app(settings, options, load_in_background=True)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_body_over_the_limit_gets_413_and_the_connection_closes(base):
    for path in ("/predict", "/invocations"):
        answer = httpx.post(base + path, content=b"[" + b" " * (LIMIT + 10) + b"]", headers={"content-type": "x"})
        assert answer.status_code == 413 and answer.json()["error_code"] == "PAYLOAD_TOO_LARGE", path
        assert answer.headers["connection"] == "close" and answer.headers["content-type"] == "application/json"
        assert int(answer.headers["content-length"]) == len(answer.content)


def test_a_chunked_body_over_the_limit_without_a_length_is_refused_too(base):
    def chunks():
        for _ in range(8):
            yield b" " * 1024

    answer = httpx.post(base + "/predict", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.headers["connection"] == "close"


def test_a_body_within_the_limit_reaches_the_service(base):
    def chunks():
        yield b"[{"
        yield b"}]"

    for content in (b"[{}]", chunks()):
        answer = httpx.post(base + "/predict", content=content, headers={"content-type": "application/json"})
        assert answer.status_code == 503 and answer.json()["error_code"] == "NOT_READY"  # the service answered
        assert "connection" not in answer.headers or answer.headers["connection"] != "close"


def test_other_methods_and_routes_are_starlettes(base):
    assert httpx.get(base + "/predict").status_code == 405
    assert httpx.post(base + "/predictions", content=b"{}").status_code == 404
    assert httpx.get(base + "/healthz").json()["status"] == "alive"
    assert httpx.get(base + "/readyz").status_code == 503
