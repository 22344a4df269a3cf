"""Shared by the hub's integration tests: settings for a hub on free ports with temp state, and a
browser-like client (form login, cookies, XSRF header)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import REPO, free_port
from workbench.config import Settings, load_settings
from workbench.hub import accounts
from workbench.hub.launcher import HubProcess

PASSWORD = "integration-test-pw-7"


def hub_settings(root: Path, users_yaml: str, **overrides) -> Settings:
    (root / "users.yaml").write_text(users_yaml)
    return load_settings(env={"WORKBENCH_HOME": str(REPO)}).with_overrides(
        hub_state_dir=str(root / "state"),
        hub_users_file=str(root / "users.yaml"),
        reports_dir=str(root / "reports"),
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        mlflow_artifacts=str(root / "mlartifacts"),
        audit_dir=str(root / "audit"),
        hub_port=free_port(),
        hub_api_port=free_port(),
        proxy_api_port=free_port(),
        reports_port=free_port(),
        mlflow_ui_port=free_port(),
        spark_master="local[2]",
        hub_admin_password=PASSWORD,
        **overrides,
    )


@contextlib.contextmanager
def running_hub(settings: Settings, root: Path, accounts_for: list[str]) -> Iterator[SimpleNamespace]:
    """The hub started by the launcher `workbench hub` uses; on exit, stopped, and its ports checked closed."""
    if not settings.path("proxy_command").exists():
        pytest.skip("configurable-http-proxy is not installed: run `make setup`")
    for name in accounts_for:
        accounts.set_password(settings, name, PASSWORD)
    with open(root / "hub.log", "w") as log:
        process = HubProcess(settings, log=log).start()
        try:
            yield SimpleNamespace(url=process.url, settings=settings, root=root)
        finally:
            process.stop()
    ports = [
        settings.hub_port,
        settings.hub_api_port,
        settings.proxy_api_port,
        settings.reports_port,
        settings.mlflow_ui_port,
    ]
    still_open = [p for p in ports if listening(p)]
    assert not still_open, f"ports still served after the hub stopped: {still_open}"


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def client(hub) -> httpx.Client:
    return httpx.Client(base_url=hub.url, follow_redirects=True, timeout=60)


def login(hub, name: str) -> httpx.Client:
    """A logged-in browser-like session (cookies), as after submitting the login form. The redirect after
    login is recorded, not followed: for a data scientist it would start their server."""
    c = client(hub)
    c.get("/hub/login")
    r = c.post(
        "/hub/login",
        data={"username": name, "password": PASSWORD, "_xsrf": c.cookies.get("_xsrf", path="/hub/")},
        follow_redirects=False,
    )
    assert r.status_code == 302, f"login failed for {name}"
    c.landing = r.headers["location"]
    return c


def xsrf(c: httpx.Client) -> dict:
    return {"X-XSRFToken": c.cookies.get("_xsrf", path="/hub/")}


def api_token(c: httpx.Client, name: str) -> str:
    r = c.post(f"/hub/api/users/{name}/tokens", json={"note": "integration test", "expires_in": 3600}, headers=xsrf(c))
    assert r.status_code == 201, r.text
    return r.json()["token"]
