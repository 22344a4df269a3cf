"""The reports site as a hub service: the `reports_dir` folder, behind the hub's login (OAuth).

The hub starts it (`python -m workbench.hub.service reports`) with its URL, prefix and token in the
environment. Whoever opens it logs in at the hub; the hub lets through only people whose groups
give them `access:services!service=reports` (see workbench.hub.configure), everyone else gets 403.
Files are served read-only; a folder without an index.html gets a plain listing.
"""

from __future__ import annotations

import html
import os
import secrets
import socket
from pathlib import Path
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from ._serve import run_service

__all__ = ["make_app", "main"]

INDEX = "index.html"


class ReportsHandler(HubOAuthenticated, web.StaticFileHandler):
    @web.authenticated
    async def get(self, path: str, include_body: bool = True) -> None:
        folder = self._folder(path)
        if folder is not None and not (folder / INDEX).is_file():
            if not self.request.path.endswith("/"):
                self.redirect(self.request.path + "/")
                return
            self._listing(folder, path)
            return
        await super().get(path, include_body)

    @web.authenticated
    async def head(self, path: str) -> None:
        await self.get(path, include_body=False)

    def _folder(self, path: str) -> Path | None:
        root = Path(self.root).resolve()
        target = (root / path).resolve()
        if target != root and root not in target.parents:
            raise web.HTTPError(403)
        return target if target.is_dir() else None

    def _listing(self, folder: Path, path: str) -> None:
        entries = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name)) if folder.exists() else []
        items = "".join(
            f'<li><a href="{quote(p.name)}{"/" if p.is_dir() else ""}">{html.escape(p.name)}{"/" if p.is_dir() else ""}</a></li>'
            for p in entries
            if not p.name.startswith(".")
        )
        title = html.escape("/" + path if path else "Reports")
        body = f"<ul>{items}</ul>" if items else "<p>No reports yet. Runs of notebook jobs appear here.</p>"
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1>{body}</body></html>"
        )

    def compute_etag(self) -> str | None:
        return super().compute_etag() if getattr(self, "absolute_path", None) else None  # listings have no file

    def set_extra_headers(self, path: str) -> None:
        # Reports may hold governed results: never cache them in shared caches.
        self.set_header("Cache-Control", "private, no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")


def make_app(reports_dir: Path, prefix: str) -> web.Application:
    return web.Application(
        [
            (prefix.rstrip("/"), web.RedirectHandler, {"url": prefix}),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix + "(.*)", ReportsHandler, {"path": str(reports_dir), "default_filename": INDEX}),
        ],
        cookie_secret=secrets.token_bytes(32),
    )


def main(sock: socket.socket) -> None:
    from ..config import load_settings

    reports_dir = load_settings().path("reports_dir").resolve()
    reports_dir.mkdir(parents=True, exist_ok=True)
    run_service(make_app(reports_dir, os.environ["JUPYTERHUB_SERVICE_PREFIX"]), sock)
