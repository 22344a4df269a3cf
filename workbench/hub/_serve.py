"""Run a tornado app as a hub service until the hub stops it (SIGINT or SIGTERM), then clean up."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable

from tornado import web
from tornado.httpserver import HTTPServer

log = logging.getLogger("workbench.hub")


def run_service(
    app: web.Application,
    sock: socket.socket,
    on_start: Callable[[asyncio.Event], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve `app` on the listening `sock`; `on_start(stop)` may set `stop` to end the service (the hub then restarts it)."""
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    asyncio.run(_serve(app, sock, on_start, on_stop))


async def _serve(app, sock, on_start, on_stop) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = HTTPServer(app, xheaders=True)
    server.add_sockets([sock])  # bound early by workbench.hub.service
    log.info("serving on http://%s:%s", *sock.getsockname()[:2])
    try:
        if on_start is not None:
            await on_start(stop)
        await stop.wait()
    finally:
        server.stop()
        if on_stop is not None:
            await on_stop()
