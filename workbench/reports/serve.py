"""`workbench reports serve`: the static reports folder over HTTP on 127.0.0.1, for a quick look.

The site needs no server (open index.html); this is a convenience. Behind the hub, the hub's
reports service does the same behind login.
"""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from ..config import Settings, load_settings
from .site import build_index

__all__ = ["make_server"]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


def make_server(
    settings: Settings | None = None, port: int | None = None, host: str = "127.0.0.1", rebuild: bool = True
) -> ThreadingHTTPServer:
    """An HTTP server for the reports folder (call serve_forever(); shutdown() to stop). Rebuilds the index first."""
    settings = settings or load_settings()
    if rebuild:
        build_index(settings)
    folder = settings.path("reports_dir")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return ThreadingHTTPServer((host, settings.reports_serve_port if port is None else port), handler)
