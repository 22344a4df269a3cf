"""Entry point of the workbench's hub services: `python -m workbench.hub.service reports|mlflow`.

The hub gives a managed service about ten seconds to answer on its URL, then gives up and exits;
importing tornado and JupyterHub's auth module alone takes longer than that on a loaded machine.
So the port is bound first, with the standard library only; the hub's first request waits in the
listen queue until the service, fully imported, answers it.
"""

import importlib
import os
import socket
import sys
from urllib.parse import urlparse

SERVICES = ("reports", "mlflow")


def bind(url: str) -> socket.socket:
    parsed = urlparse(url)
    sock = socket.socket(socket.AF_INET6 if ":" in (parsed.hostname or "") else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((parsed.hostname, parsed.port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in SERVICES:
        sys.exit(f"usage: python -m workbench.hub.service {{{'|'.join(SERVICES)}}}")
    sock = bind(os.environ["JUPYTERHUB_SERVICE_URL"])
    importlib.import_module(f"workbench.hub.{args[0]}_service").main(sock)


if __name__ == "__main__":
    main()
