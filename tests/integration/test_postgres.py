"""The production databases for real: a throw-away PostgreSQL cluster (tests/integration/pgtools.py) behind

- an MLflow tracking server (`mlflow server --backend-store-uri postgresql://...`, artifacts uploaded through
  the server to a local folder): `train` registers, the gate promotes, `workbench serve` loads the champion and
  hot-reloads the next one, with only the settings changed (WORKBENCH_MLFLOW_TRACKING_URI=http://...,
  WORKBENCH_MLFLOW_ARTIFACTS=mlflow-artifacts:/);
- the hub with WORKBENCH_HUB_DB_URL=postgresql://...: login, spawn, and a hub restart that keeps the users and
  the running server (hub_cleanup_servers=false).

Both check the rows in PostgreSQL itself, so a silent fallback to SQLite would fail them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.hubtools import api_token, hub_settings, login, running_hub

pytestmark = pytest.mark.integration

WAIT = 180  # seconds for something asynchronous on a busy machine; never asserted on as a speed
MODEL = "flights-late-pg"


# ---- MLflow on PostgreSQL ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """`mlflow server` on the cluster's `mlflow` database, proxying artifacts to a local folder."""
    backend = postgres.create_database("mlflow")
    artifacts = tmp_path_factory.mktemp("pg-mlartifacts")
    port = free_port()
    log = open(tmp_path_factory.mktemp("pg-mlflow-log") / "mlflow.log", "w+")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", proc, log)
        yield url, artifacts
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def _wait_http(url: str, proc: subprocess.Popen, log) -> None:
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"the server exited with {proc.returncode}:\n{log.read()[-3000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"nothing answered at {url} after {WAIT} s")


def _serve(settings, port: int) -> subprocess.Popen:
    """`workbench serve` configured by environment only, polling the registry's aliases every 0.3 s."""
    from tests.serving_support import serve_env

    env = serve_env(settings, settings.predictions_dir, "300", WORKBENCH_SERVING_FALLBACK="none")
    return subprocess.Popen(
        [sys.executable, "-m", "workbench", "serve", "--model", MODEL, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def restore_mlflow_uris():
    """The test points MLflow's process-wide URIs at a server that stops after it: put them back."""
    import mlflow

    tracking, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry_uri)


def test_train_gate_and_serve_through_an_mlflow_server_on_postgresql(
    postgres, mlflow_server, repo_settings, spark, tmp_path, restore_mlflow_uris
):
    from tests.serving_support import expected_scores, raw_rows, records
    from workbench import registry
    from workbench.gate import evaluate
    from workbench.serving.fastpath import snapshot_sample
    from workbench.serving.model import snapshot_lookups
    from workbench.training import train

    url, artifacts = mlflow_server
    settings = repo_settings.with_overrides(
        mlflow_tracking_uri=url,
        mlflow_artifacts="mlflow-artifacts:/",
        mlflow_experiment="postgres-test",
        model_name=MODEL,
        serving_cache_dir=str(tmp_path / "cache"),
        predictions_dir=str(tmp_path / "predictions"),
    )
    first = train(
        "flights",
        train_where="month = 1",
        params={"n_estimators": 20, "num_leaves": 15},
        register=True,
        alias="challenger",
        settings=settings,
        spark=spark,
    )
    gate = evaluate(
        dataset="flights", eval_where="month = 2 AND day <= 7", promote=True, settings=settings, spark=spark
    )
    assert gate.passed and gate.promoted, gate.reasons  # no champion yet: the floor alone decides
    assert registry.get_version(MODEL, "champion", settings).version == first.version

    snapshot_lookups(settings, ["flights_context"], spark)
    snapshot_sample(settings, first.spec, spark)  # so `workbench serve` starts without Spark
    raw = raw_rows(first.spec, settings, spark, n=5)
    port = free_port()
    proc = _serve(settings, port)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT)
    try:
        _wait_ready(client, proc)

        def answer() -> dict:
            return client.post("/predict", json=records(raw)[0]).json()["predictions"][0]

        first_answer = answer()
        assert first_answer["model_version"] == str(first.version)
        expected = expected_scores(raw, registry.model_uri(MODEL, first.version), first.spec, settings, spark)
        assert first_answer["prediction"] == pytest.approx(expected[0], abs=1e-12)

        second = train(
            "flights",
            train_where="month <= 2",
            params={"n_estimators": 40, "num_leaves": 15},
            register=True,
            alias="challenger",
            settings=settings,
            spark=spark,
        )
        # tolerance 1: this test is about the promotion path through PostgreSQL, not which model is better
        gate = evaluate(
            dataset="flights",
            eval_where="month = 3 AND day <= 7",
            tolerance=1.0,
            promote=True,
            settings=settings,
            spark=spark,
        )
        assert gate.passed and gate.promoted and gate.champion_version == first.version, gate.reasons
        end = time.monotonic() + WAIT
        while (now := answer())["model_version"] != str(second.version) and time.monotonic() < end:
            time.sleep(0.3)
        assert now["model_version"] == str(second.version), "serve did not hot-reload the new champion"
        expected = expected_scores(raw, registry.model_uri(MODEL, second.version), second.spec, settings, spark)
        assert now["prediction"] == pytest.approx(expected[0], abs=1e-12)
    finally:
        client.close()
        proc.terminate()
        proc.wait(60)

    # the registry lives in PostgreSQL, the model files in the server's artifact folder
    versions = postgres.query("mlflow", "SELECT version FROM model_versions WHERE name = %s ORDER BY version", MODEL)
    assert [v for (v,) in versions] == [first.version, second.version]
    alias = postgres.query(
        "mlflow", "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = %s", MODEL, "champion"
    )
    assert alias == [(second.version,)]
    assert any(artifacts.rglob("MLmodel"))


def _wait_ready(client: httpx.Client, proc: subprocess.Popen) -> None:
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(
                f"workbench serve exited with {proc.returncode}: {proc.stderr.read().decode()[-3000:]}"
            )
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("workbench serve did not become ready")


# ---- the hub on PostgreSQL ----------------------------------------------------------------------------------
USERS = """
groups:
  data-scientists: {server: true, services: []}
  data-stewards: {server: true, services: []}
  stakeholders: {server: false, services: []}
  admins: {admin: true, server: true, services: []}
users:
  admin: [admins]
  ada: [data-scientists]
"""


def test_the_hub_on_postgresql_keeps_users_and_a_running_server_across_a_restart(postgres):
    db = postgres.create_database("jupyterhub")
    root = Path(tempfile.mkdtemp(prefix="wb-hub-pg-"))  # not pytest's 0700 folder: see tests/integration/test_hub.py
    root.chmod(0o755)
    try:
        settings = hub_settings(root, USERS, hub_db_url=db, hub_services=(), hub_cleanup_servers=False)
        with running_hub(settings, root, ["admin", "ada"]) as hub:
            ada = login(hub, "ada")
            token = api_token(ada, "ada")
            api = httpx.Client(base_url=hub.url, headers={"Authorization": f"token {token}"}, timeout=60)
            assert api.post("/hub/api/users/ada/server").status_code in (201, 202)
            before = _ready_server(api, "ada")
        assert ("ada",) in postgres.query("jupyterhub", "SELECT name FROM users")

        # the hub is down; its database and ada's server are not
        with running_hub(settings, root, []) as hub:
            api = httpx.Client(base_url=hub.url, headers={"Authorization": f"token {token}"}, timeout=60)
            after = _ready_server(api, "ada")
            assert after["started"] == before["started"], "the server was started again, not kept"
            assert api.get("/user/ada/api/status").status_code == 200  # routed to the same server by the new proxy
            login(hub, "ada")  # her password, from before the restart
            assert api.delete("/hub/api/users/ada/server").status_code in (202, 204)
            end = time.monotonic() + WAIT
            while api.get("/hub/api/users/ada").json()["servers"] and time.monotonic() < end:
                time.sleep(0.5)
            assert not api.get("/hub/api/users/ada").json()["servers"]
    finally:
        _stop_left_servers(postgres)
        shutil.rmtree(root, ignore_errors=True)


def _stop_left_servers(postgres) -> None:
    """A failure between spawn and stop leaves a server the hub no longer stops: end it by the pid in the
    hub's database (only servers this test started: the database is this test's own)."""
    for (state,) in postgres.query("jupyterhub", "SELECT state FROM spawners"):
        pid = (json.loads(state) if isinstance(state, str) else state or {}).get("pid")
        if pid:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def _ready_server(api: httpx.Client, name: str) -> dict:
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        server = api.get(f"/hub/api/users/{name}").json().get("servers", {}).get("")
        if server and server.get("ready"):
            return server
        time.sleep(1)
    raise AssertionError(f"{name}'s server was not ready after {WAIT} s")
