"""`workbench serve` for real: uvicorn on 127.0.0.1 with real registered models (a temp SQLite MLflow store).

One server in a thread for the request-level tests (champion 70% / challenger 30% by entity, the
'fragile' model as shadow, alias polling every 0.3 s), and `workbench serve` subprocesses for the
prediction log under SIGTERM and SIGKILL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import uvicorn

from workbench import registry
from workbench.serving import ServeOptions, create_app
from workbench.serving.model import Lookups
from workbench.serving.routing import Router

from ..conftest import free_port
from ..serving_support import SERVING_MODEL, UNSEEN_CARRIER, records, serve_env

pytestmark = pytest.mark.integration

NAME = SERVING_MODEL
SECRET = "s3cr3t-value"
WAIT = 120  # seconds to wait for something asynchronous (the machine may be busy); never asserted on


@pytest.fixture(scope="module")
def server(setup):
    settings, versions, raw, expected = setup
    options = ServeOptions.from_settings(
        settings, NAME, split={"challenger": 30}, shadow="fragile", reload_interval=0.3, timeout=60.0, fallback="none"
    )
    app = create_app(settings, options, lookups=Lookups(settings))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT)
    _wait_ready(client)
    yield client, app.state.service
    client.close()
    srv.should_exit = True
    thread.join(60)


def _wait_ready(client: httpx.Client, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + WAIT * 2
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {proc.stderr.read().decode()[-3000:]}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def _eventually(check, what: str):
    deadline = time.time() + WAIT
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _metric(client: httpx.Client, name: str, **labels) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---- predictions --------------------------------------------------------------------------------------------
def test_predictions_equal_pyfunc_predict_for_each_variant(server, setup):
    client, _ = server
    settings, versions, raw, expected = setup
    rows = [{**r, "entity_id": f"plane-{i}"} for i, r in enumerate(records(raw))]
    response = client.post("/predict", json=rows)
    assert response.status_code == 200
    answers = response.json()["predictions"]
    assert {a["variant"] for a in answers} == {"champion", "challenger"}
    for i, a in enumerate(answers):
        assert not a["fallback"]
        assert a["model_version"] == str(versions["lightgbm" if a["variant"] == "champion" else "logistic"])
        assert a["prediction"] == pytest.approx(expected[a["model_version"]][i], abs=1e-12)
    one = client.post("/predict", json=rows[3]).json()["predictions"][0]
    assert one["prediction"] == answers[3]["prediction"] and one["entity_id"] == "plane-3"


def test_mlflow_clients_get_the_mlflow_response_shape(server, setup):
    client, _ = server
    settings, versions, raw, expected = setup
    frame = raw.head(5)
    payload = {"dataframe_split": json.loads(frame.to_json(orient="split", date_format="iso", index=False))}
    body = client.post("/invocations", json=payload).json()
    primary = [i for i, meta in enumerate(body["workbench"]) if meta["variant"] == "champion"]
    assert primary
    for i in primary:
        assert body["predictions"][i][1] == pytest.approx(expected[str(versions["lightgbm"])][i], abs=1e-12)
        assert body["predictions"][i][0] == pytest.approx(1 - body["predictions"][i][1])


def test_the_same_entity_always_gets_the_same_variant(server, setup):
    client, _ = server
    row = records(setup[2])[0]
    first = {}
    for round_ in range(2):
        batch = [{**row, "entity_id": f"e{i}"} for i in range(200)]
        for a in client.post("/predict", json=batch).json()["predictions"]:
            assert first.setdefault(a["entity_id"], a["variant"]) == a["variant"]
    share = sum(v == "challenger" for v in first.values()) / len(first)
    assert 0.18 < share < 0.42
    router = Router("champion", {"challenger": 30}, salt=NAME)
    assert all(router.route(e, "x") == v for e, v in first.items())


# ---- bad requests ----------------------------------------------------------------------------------------------
def _corpus(good: dict) -> list[tuple[str, str, bytes | str, str | None]]:
    """(name, method/path, body, content type): each must get a 4xx naming its problem."""
    j = "application/json"
    drop = lambda k: {c: v for c, v in good.items() if c != k}  # noqa: E731
    with_ = lambda **kw: json.dumps({**good, **kw})  # noqa: E731
    big = json.dumps([good] * 1001)
    return [
        ("malformed json", "/predict", b'{"origin": "JFK", ', j),
        ("empty body", "/predict", b"", j),
        ("whitespace body", "/predict", b"  \n ", j),
        ("invalid utf-8", "/predict", b'{"origin": "\xff\xfe"}', j),
        ("text/plain", "/predict", json.dumps(good), "text/plain"),
        ("no content type", "/predict", json.dumps(good), None),
        ("form content type", "/predict", "origin=JFK", "application/x-www-form-urlencoded"),
        ("json string", "/predict", b'"hello"', j),
        ("json number", "/predict", b"42", j),
        ("json null", "/predict", b"null", j),
        ("empty list", "/predict", b"[]", j),
        ("list of numbers", "/predict", b"[1, 2]", j),
        ("missing column", "/predict", json.dumps(drop("dest")), j),
        ("no columns at all", "/predict", b"{}", j),
        ("string for a number", "/predict", with_(distance=SECRET), j),
        ("number for a string", "/predict", with_(carrier=12345), j),
        ("boolean for a number", "/predict", with_(distance=True), j),
        ("array for a string", "/predict", with_(origin=[SECRET]), j),
        ("object for a string", "/predict", with_(dest={"code": SECRET}), j),
        ("NaN", "/predict", json.dumps(good)[:-1] + ', "distance": NaN}', j),
        ("Infinity", "/predict", json.dumps(good)[:-1] + ', "hour": Infinity}', j),
        ("-Infinity", "/predict", json.dumps(good)[:-1] + ', "minute": -Infinity}', j),
        ("overflowing number", "/predict", json.dumps(good)[:-1] + ', "distance": 1e999}', j),
        ("huge string", "/predict", with_(carrier=SECRET * 2000), j),
        ("string for an integer", "/predict", with_(hour=SECRET), j),
        ("a list holding a non-record", "/predict", "[" + json.dumps(good) + ', "' + SECRET + '"]', j),
        ("fraction for an integer", "/predict", with_(year=2013.5), j),
        ("10 MB body", "/predict", b"[" + b" " * (10 << 20) + b"]", j),
        ("too many rows", "/predict", big, j),
        ("tensor format", "/invocations", json.dumps({"instances": [[1, 2, 3]]}), j),
        (
            "split row of the wrong length",
            "/invocations",
            json.dumps({"dataframe_split": {"columns": list(good), "data": [[1]]}}),
            j,
        ),
        (
            "split columns not strings",
            "/invocations",
            json.dumps({"dataframe_split": {"columns": [1, 2], "data": []}}),
            j,
        ),
        (
            "split data not a list",
            "/invocations",
            json.dumps({"dataframe_split": {"columns": list(good), "data": SECRET}}),
            j,
        ),
        ("two formats", "/invocations", json.dumps({"dataframe_split": {}, "dataframe_records": []}), j),
        ("extra top-level key", "/invocations", json.dumps({"dataframe_records": [good], SECRET: 1}), j),
        ("records not a list", "/invocations", json.dumps({"dataframe_records": {"a": SECRET}}), j),
        ("request_id an object", "/predict", with_(request_id={"x": SECRET}), j),
        ("request_id too long", "/predict", with_(request_id="r" * 500), j),
        ("entity_id with spaces", "/predict", with_(entity_id=f"{SECRET} {SECRET}"), j),
        ("deep nesting", "/predict", "[" * 100_000 + "]" * 100_000, j),
        ("GET on predict", "GET /predict", b"", None),
        ("unknown route", "/nope", json.dumps(good), j),
    ]


def test_a_corpus_of_bad_requests_gets_4xx_with_named_problems_and_the_server_keeps_serving(server, setup):
    client, _ = server
    good = records(setup[2])[0]
    corpus = _corpus(good)
    assert len(corpus) >= 30
    for name, target, body, content_type in corpus:
        method, path = target.split(" ") if " " in target else ("POST", target)
        headers = {"content-type": content_type} if content_type else {}
        response = client.request(method, path, content=body, headers=headers)
        assert 400 <= response.status_code < 500, name
        payload = response.json()
        assert payload["error_code"] and payload["message"], name
        if response.status_code not in (404, 405):
            assert payload["problems"] and all(p["field"] for p in payload["problems"]), name
        assert SECRET not in response.text, name
    assert client.post("/predict", json=good).status_code == 200
    assert client.get("/healthz").status_code == 200


# ---- shadow -------------------------------------------------------------------------------------------------------
def test_a_failing_shadow_never_touches_the_primary(server, setup):
    client, service = server
    settings, versions, raw, expected = setup
    failures_before = _metric(client, "workbench_serving_shadow_failures_total")
    rows = [{**r, "carrier": UNSEEN_CARRIER, "entity_id": f"plane-{i}"} for i, r in enumerate(records(raw.head(10)))]
    response = client.post("/predict", json=rows)
    assert response.status_code == 200
    for a in response.json()["predictions"]:
        assert not a["fallback"] and "carrier" in a["out_of_domain"]
        assert a["variant"] in ("champion", "challenger")
    _eventually(
        lambda: _metric(client, "workbench_serving_shadow_failures_total") >= failures_before + 10,
        "the shadow failures to be counted",
    )
    ok = client.post("/predict", json=[{**r, "entity_id": f"plane-{i}"} for i, r in enumerate(records(raw.head(10)))])
    assert all(not a["fallback"] for a in ok.json()["predictions"])
    _eventually(lambda: _metric(client, "workbench_serving_shadow_comparisons_total") > 0, "shadow comparisons")


# ---- operations -----------------------------------------------------------------------------------------------------
def test_health_readiness_metrics_and_docs(server, setup):
    client, _ = server
    settings, versions, raw, expected = setup
    assert client.get("/healthz").json()["status"] == "alive"
    ready = client.get("/readyz").json()
    assert ready["variants"]["champion"]["version"] == versions["lightgbm"]
    assert ready["variants"]["challenger"]["percent"] == 30 and ready["variants"]["fragile"]["role"] == "shadow"
    text = client.get("/metrics").text
    for name in (
        "workbench_serving_requests_total",
        "workbench_serving_request_latency_seconds_bucket",
        "workbench_serving_errors_total",
        "workbench_serving_predictions_total",
        "workbench_serving_prediction_latency_seconds_bucket",
        "workbench_serving_shadow_disagreement_ratio",
        "workbench_serving_batch_rows_bucket",
    ):
        assert name in text, name
    assert 'variant="challenger"' in text
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/invocations", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert set(setup[2].columns) <= set(spec["components"]["schemas"]["Record"]["properties"])
    assert "swagger-ui" in client.get("/docs").text


def test_hot_reload_swaps_a_good_version_and_keeps_serving_through_a_broken_one(server, setup):
    client, service = server
    settings, versions, raw, expected = setup
    row = records(raw)[0]
    entity = next(
        f"e{i}" for i in range(1000) if Router("champion", {"challenger": 30}, NAME).route(f"e{i}", "") == "champion"
    )

    def version() -> str:
        return client.post("/predict", json={**row, "entity_id": entity}).json()["predictions"][0]["model_version"]

    assert version() == str(versions["lightgbm"])
    registry.set_alias(NAME, "champion", versions["logistic"], reason="test: promote", settings=settings)
    _eventually(lambda: version() == str(versions["logistic"]), "the new champion to answer")
    assert _metric(client, "workbench_serving_reloads_total", variant="champion", outcome="swapped") >= 1

    registry.set_alias(NAME, "champion", versions["broken"], reason="test: a broken version", settings=settings)
    _eventually(
        lambda: _metric(client, "workbench_serving_reloads_total", variant="champion", outcome="failed") >= 1,
        "the broken version to be refused",
    )
    assert version() == str(versions["logistic"])
    assert "smoke test" in client.get("/readyz").json()["variants"]["champion"]["error"]
    registry.set_alias(NAME, "champion", versions["lightgbm"], reason="test: restore", settings=settings)
    _eventually(lambda: version() == str(versions["lightgbm"]), "the restored champion")


# ---- the prediction log of `workbench serve` processes -------------------------------------------------------------------
def _serve(setup, predictions: Path, *args: str, **env_extra) -> tuple[subprocess.Popen, httpx.Client]:
    settings = setup[0]
    port = free_port()
    env = serve_env(settings, str(predictions), "0", **env_extra)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench",
            "serve",
            "--model",
            NAME,
            "--shadow",
            "challenger",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *args,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT)
    _wait_ready(client, proc)
    return proc, client


def _send(
    client: httpx.Client,
    rows: list[dict],
    acked: list[str],
    stop: threading.Event | None = None,
    sent: list[str] | None = None,
) -> None:
    for i, row in enumerate(rows):
        if stop is not None and stop.is_set():
            return
        request_id = f"{threading.get_ident()}-{i}"
        if sent is not None:
            sent.append(request_id)
        try:
            response = client.post("/predict", json={**row, "request_id": request_id})
        except httpx.TransportError:
            return
        if response.status_code == 200:
            acked.append(response.json()["predictions"][0]["request_id"])


def _logged(folder: Path) -> pd.DataFrame:
    files = sorted(folder.rglob("part-*.parquet"))
    return (
        pd.concat([pq.read_table(f).to_pandas() for f in files])
        if files
        else pd.DataFrame(columns=["request_id", "shadow"])
    )


def test_every_acknowledged_request_is_in_the_log_after_a_graceful_shutdown(setup, tmp_path):
    rows = records(setup[2])[:12]
    proc, client = _serve(setup, tmp_path, WORKBENCH_PREDLOG_ROLL_SECONDS="3600")
    acked: list[str] = []
    threads = [threading.Thread(target=_send, args=(client, rows, acked)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acked) == 4 * len(rows)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down cleanly
    logged = _logged(tmp_path)
    assert set(acked) <= set(logged.loc[~logged.shadow, "request_id"])
    assert logged.loc[logged.shadow, "variant"].eq("challenger").all()
    assert not list(tmp_path.rglob("*.tmp"))


def test_after_sigkill_every_file_on_disk_is_readable_parquet(setup, tmp_path):
    rows = records(setup[2]) * 50
    proc, client = _serve(setup, tmp_path, WORKBENCH_PREDLOG_ROLL_SECONDS="1")
    acked: list[str] = []
    sent: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_send, args=(client, rows, acked, stop, sent), daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    _eventually(lambda: len(list(tmp_path.rglob("part-*.parquet"))) >= 2, "two rolled files")
    proc.send_signal(signal.SIGKILL)
    proc.wait(WAIT)
    stop.set()
    for t in threads:
        t.join(WAIT)
    files = sorted(tmp_path.rglob("part-*.parquet"))
    for f in files:
        assert pq.read_table(f).num_rows > 0
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()  # what the drift monitor does
    logged = set(table.column("request_id").to_pylist())
    assert logged and logged <= set(sent)  # whole rows of real requests, nothing half-written
    assert set(np.asarray(table.column("model_version").to_pylist())) <= {str(v) for v in setup[1].values()}


def test_after_sigkill_under_32_clients_every_acknowledged_request_is_logged_exactly_once(setup, tmp_path):
    """Acknowledged means logged (predlog_durability = ack): kill -9 while 32 clients send, restart, and every
    request_id that got a 200 is in the log once - recovered from the write-ahead file, never twice."""
    rows = records(setup[2]) * 20
    proc, client = _serve(setup, tmp_path, WORKBENCH_PREDLOG_ROLL_SECONDS="1", WORKBENCH_PREDLOG_DURABILITY="ack")
    acked: list[str] = []
    sent: list[str] = []
    stop = threading.Event()
    clients = [httpx.Client(base_url=client.base_url, timeout=WAIT) for _ in range(32)]
    threads = [threading.Thread(target=_send, args=(c, rows, acked, stop, sent), daemon=True) for c in clients]
    for t in threads:
        t.start()
    _eventually(lambda: len(acked) >= 400 and list(tmp_path.rglob("part-*.parquet")), "400 answers and a rolled file")
    proc.send_signal(signal.SIGKILL)
    proc.wait(WAIT)
    stop.set()
    for t in threads:
        t.join(WAIT)
    assert list(tmp_path.rglob("_wal/*.wal")), "the killed server left rows in its write-ahead file"
    before = set(_logged(tmp_path).request_id)
    assert not set(acked) <= before, "every acknowledged row was already rolled: the kill proved nothing"

    proc, client = _serve(setup, tmp_path)  # recovers on start
    proc.send_signal(signal.SIGTERM)
    proc.wait(WAIT)
    logged = _logged(tmp_path)
    answered = logged.loc[~logged.shadow.astype(bool), "request_id"]
    assert set(acked) <= set(answered)
    assert not answered.duplicated().any(), "a request is in the log twice"
    assert not list(tmp_path.rglob("_wal/*.wal"))
    for c in clients:
        c.close()


def test_schemathesis_finds_the_openapi_document_and_the_server_in_agreement(setup, tmp_path):
    """`schemathesis run --checks all` against a live `workbench serve`: no 5xx, every schema-valid request accepted,
    every schema-invalid one refused, every response as documented. (A constant fallback answers what the models
    cannot - e.g. a logistic regression fed 1e308 - as production would configure it.)"""
    proc, client = _serve(setup, tmp_path, WORKBENCH_SERVING_FALLBACK="previous,constant:0.5")
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{client.base_url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "40",
                "--seed",
                "15",
                "--generation-database",
                "none",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,  # its cache folder (.schemathesis) goes there, not into the checkout
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(WAIT)
    (tmp_path / "schemathesis.txt").write_text(result.stdout + result.stderr)  # the whole report, kept by pytest
    failures = [line for line in result.stdout.splitlines() if "Invalid component" in line or line.startswith("- ST")]
    assert result.returncode == 0, "\n".join(failures[:40]) + result.stdout[-3000:]


def test_two_workers_share_the_port_each_on_its_compiled_plan_and_log_every_answer(setup, tmp_path):
    rows = records(setup[2])[:10]
    proc, client = _serve(setup, tmp_path, "--workers", "2")
    paths = {v["path"].split(" ")[0] for v in client.get("/readyz").json()["variants"].values()}
    assert paths == {"compiled"}
    acked: list[str] = []
    clients = [httpx.Client(base_url=client.base_url, timeout=WAIT) for _ in range(8)]
    threads = [threading.Thread(target=_send, args=(c, rows, acked)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acked) == 80
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT) in (0, -signal.SIGTERM)
    logged = _logged(tmp_path)
    answered = logged.loc[~logged.shadow.astype(bool), "request_id"]
    assert set(acked) <= set(answered) and not answered.duplicated().any()
    for c in clients:
        c.close()
