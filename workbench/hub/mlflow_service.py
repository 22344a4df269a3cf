"""The MLflow UI as a hub service: `mlflow server` behind a small proxy that requires the hub's login.

Why a proxy rather than routing the hub straight to `mlflow server`: the hub's proxy does not
authenticate service traffic, and MLflow has no notion of hub users. So this service
- starts `mlflow server` (the tracking store and artifacts from settings) listening only on a unix
  socket in a private (0700) temporary folder: nothing but this process can reach it;
- answers on the hub's service URL, lets through only people the hub authorizes for the service
  (OAuth, `access:services!service=mlflow`), and forwards their requests to the socket.

MLflow's JavaScript sends JSON POSTs (searches) without JupyterHub's `_xsrf` token, so a
cookie-authenticated write is accepted when the browser vouches that it comes from the same origin
(`Sec-Fetch-Site: same-origin`, or an `Origin` equal to the host); a page on another site cannot.

The UI opens on the registered models (`#/models`), what this product uses MLflow for, rather than MLflow's
GenAI home page: its start page gets one line of script that picks that route when the address names none.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import httpx
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from ._serve import run_service

__all__ = ["MLflowUpstream", "make_app", "main"]

log = logging.getLogger("workbench.hub.mlflow")

# Headers that belong to one connection, or to the hub and its users, and must not reach MLflow.
DROP_REQUEST = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-authorization",
    "cookie",
    "authorization",
    "origin",
    "referer",
    "content-length",
}
DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "content-length", "set-cookie"}
START_ROUTE = "#/models"  # the UI's hash route to open on when the address has none
START_SCRIPT = f"<script>if(!location.hash){{location.replace({START_ROUTE!r})}}</script>".encode()
READY_TIMEOUT = 300.0  # seconds; a loaded machine takes 30+ s to start mlflow server
STOP_GRACE = 5.0  # seconds mlflow server gets to exit after SIGTERM before SIGKILL
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM if this service dies first (even by SIGKILL), so mlflow never outlives it."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class MLflowUpstream:
    """`mlflow server` on a private unix socket, started and stopped with this service."""

    def __init__(self, settings, prefix: str):
        self.settings = settings
        self.prefix = prefix.rstrip("/")
        self.folder = Path(tempfile.mkdtemp(prefix="workbench-mlflow-"))  # mode 0700
        self.socket = self.folder / "mlflow.sock"
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket)),
            base_url="http://localhost",
            timeout=httpx.Timeout(300.0, connect=5.0),
        )
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = False
        # Tracking on a remote server: it has its own UI, and there is no store here to serve.
        self.remote = urlparse(settings.tracking_uri).scheme in ("http", "https", "databricks")
        self.unavailable = (
            f"MLflow tracking is on a remote server ({settings.tracking_uri}); open its own UI there."
            if self.remote
            else "MLflow is starting; reload this page in a few seconds."
        )

    def command(self) -> list[str]:
        s = self.settings
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            s.tracking_uri,
            "--registry-store-uri",
            s.registry_uri,
            "--default-artifact-root",
            s.artifacts_uri,
            "--artifacts-destination",
            s.artifacts_uri,
            "--workers",
            "1",
            "--static-prefix",
            self.prefix,
            "--uvicorn-opts",
            f"--uds {shlex.quote(str(self.socket))}",
        ]

    async def start(self, stop: asyncio.Event) -> None:
        if self.remote:
            log.warning(self.unavailable)
            return
        # MLflow's job runner (GenAI jobs) is a second process the UI does not need.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = await asyncio.create_subprocess_exec(
            *self.command(), cwd=self.settings.home, env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        asyncio.create_task(self._watch(stop))
        asyncio.create_task(self._wait_ready())

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + READY_TIMEOUT
        while loop.time() < end and self.proc and self.proc.returncode is None:
            try:
                if (await self.client.get(f"{self.prefix}/health")).status_code == 200:
                    self.ready = True
                    log.info("mlflow server ready")
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
        log.error("mlflow server did not become ready in %.0f s", READY_TIMEOUT)

    async def _watch(self, stop: asyncio.Event) -> None:
        code = await self.proc.wait()
        if not stop.is_set():
            log.error("mlflow server exited with status %s; stopping so the hub restarts this service", code)
            stop.set()

    async def stop(self) -> None:
        # Quickly: the hub sends SIGINT, and SIGKILL 15 s later (LocalProcessSpawner's interrupt + term timeouts).
        if self.proc and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                await asyncio.wait_for(self.proc.wait(), STOP_GRACE)
            except (TimeoutError, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        await self.client.aclose()
        shutil.rmtree(self.folder, ignore_errors=True)


class ProxyHandler(HubOAuthenticated, web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

    def initialize(self, upstream: MLflowUpstream) -> None:
        self.upstream = upstream

    def check_xsrf_cookie(self) -> None:
        headers = self.request.headers
        if headers.get("Sec-Fetch-Site") == "same-origin":
            return
        origin = headers.get("Origin")
        if origin and urlparse(origin).netloc == self.request.host:
            return
        super().check_xsrf_cookie()

    @web.authenticated
    async def proxy(self, *args) -> None:
        if not self.upstream.ready:
            self.set_status(503)
            self.set_header("Retry-After", "5")
            self.finish(self.upstream.unavailable)
            return
        start_page = self.request.method == "GET" and self.request.path.rstrip("/") == self.upstream.prefix
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in DROP_REQUEST}
        request = self.upstream.client.build_request(
            self.request.method,
            self.request.uri,
            headers=headers,
            content=self.request.body if self.request.method not in ("GET", "HEAD") else None,
        )
        try:
            response = await self.upstream.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise web.HTTPError(502, f"MLflow did not answer ({exc.__class__.__name__})") from None
        try:
            self.set_status(response.status_code, response.reason_phrase or None)
            edit = start_page and response.headers.get("content-type", "").startswith("text/html")
            seen: set[str] = set()
            for key, value in response.headers.multi_items():
                if key.lower() in DROP_RESPONSE or (edit and key.lower() == "content-encoding"):
                    continue  # (the start page is read decoded, to be edited)
                (self.add_header if key.lower() in seen else self.set_header)(key, value)
                seen.add(key.lower())
            if edit:
                page = await response.aread()
                self.write(page.replace(b"<head>", b"<head>" + START_SCRIPT, 1))
            else:
                async for chunk in response.aiter_raw():
                    self.write(chunk)
                    await self.flush()
        finally:
            await response.aclose()
        self.finish()

    get = head = post = put = patch = delete = proxy


def make_app(upstream: MLflowUpstream, prefix: str) -> web.Application:
    return web.Application(
        [
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix.rstrip("/") + "(/.*)?", ProxyHandler, {"upstream": upstream}),
        ],
        cookie_secret=secrets.token_bytes(32),
    )


def main(sock: socket.socket) -> None:
    from ..config import load_settings

    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    upstream = MLflowUpstream(load_settings(), prefix)
    run_service(make_app(upstream, prefix), sock, on_start=upstream.start, on_stop=upstream.stop)
