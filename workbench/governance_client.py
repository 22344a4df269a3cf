"""The reader's side of the governance service (`workbench.governance`), below everything that asks it
(identity, the audit, read decisions; it imports only settings and errors): one Unix-socket connection per process, newline-framed
JSON requests. It never tells the service who it is (the service reads the socket's peer uid); in
production it checks that the socket is served by the data service account, and when the service
does not answer, every governed read fails closed (GovernanceUnavailable)."""

from __future__ import annotations

import json
import os
import pwd
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

from . import errors
from .config import Settings
from .errors import GovernanceUnavailable

__all__ = ["ServiceClient", "service_client", "require_service", "peer_credentials", "MAX_MESSAGE"]

TIMEOUT = 10.0  # seconds for one answer (the service fsyncs one record per request)
MAX_MESSAGE = 1 << 20  # bytes in one request or answer line

_clients: dict[tuple[int, str], ServiceClient] = {}
_clients_lock = threading.Lock()


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket, as the kernel recorded them."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


def service_client(settings: Settings) -> ServiceClient | None:
    """The client for `governance_socket`; None in the local profile without one. Production without one
    is an error: there the service is the only party that may decide and record reads."""
    if not settings.governance_socket:
        if settings.profile == "production":
            raise GovernanceUnavailable(
                "The production profile reads governed data only through the governance service, and setting "
                "'governance_socket' is empty. Set WORKBENCH_GOVERNANCE_SOCKET to its socket (for example "
                "/run/workbench/governance.sock) and start it as the data service account: "
                "`python -m workbench.governance serve` (the hub runs it as its service 'governance')."
            )
        return None
    path = str(settings.path("governance_socket"))
    key = (os.getpid(), path)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = ServiceClient(path, settings)
        return _clients[key]


def require_service(settings: Settings) -> ServiceClient:
    client = service_client(settings)
    if client is None:  # local profile without a socket
        raise GovernanceUnavailable("No governance service is configured (setting 'governance_socket').")
    return client


class ServiceClient:
    def __init__(self, path: str, settings: Settings):
        self.path = path
        self.settings = settings
        self._sock: socket.socket | None = None
        self._reader = None
        self._lock = threading.Lock()

    # ---- the three questions ------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """{user, groups, source}: who the service says the peer of this socket is."""
        return self.call("whoami")

    def decide(
        self,
        dataset: str,
        columns: Sequence[str] | None,
        where: str | None,
        purpose: str | None,
        claim: tuple[str, Sequence[str]] | None = None,
    ) -> dict[str, Any]:
        """The service's decision as a dict (`workbench.data.decision.Decision.from_dict` reads it)."""
        request: dict[str, Any] = {"dataset": dataset, "columns": list(columns) if columns else None}
        request.update(where=where, purpose=purpose)
        if claim is not None:  # local profile: the service records what we claim, labelled local-unverified
            request["claim"] = {"user": claim[0], "groups": list(claim[1])}
        return self.call("decide", **request)

    def record(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self.call("record", fields=fields)["record"]

    # ---- transport ----------------------------------------------------------------------------
    def call(self, op: str, **args: Any) -> dict[str, Any]:
        line = (json.dumps({"op": op, **args}, default=list) + "\n").encode("utf-8")
        if len(line) > MAX_MESSAGE:
            raise errors.AuditError(f"The request to the governance service is larger than {MAX_MESSAGE} bytes.")
        with self._lock:
            for attempt in (1, 2):  # a connection left over from a restarted service fails once, then we reconnect
                try:
                    if self._sock is None:
                        self._connect()
                    self._sock.sendall(line)
                    raw = self._reader.readline(MAX_MESSAGE + 1)
                    if not raw.endswith(b"\n"):
                        raise ConnectionError("the service closed the connection")
                    break
                except (OSError, ValueError) as exc:
                    self._close()
                    if attempt == 2 or isinstance(exc, GovernanceUnavailable):
                        raise self._unavailable(exc) from None
        answer = json.loads(raw)
        if "error" in answer:
            cls = getattr(errors, str(answer["error"]), None)
            if not (isinstance(cls, type) and issubclass(cls, errors.WorkbenchError)):
                cls = errors.AuditError
            raise cls(str(answer.get("message", "")))
        return answer

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(self.path)
            _, uid, _ = peer_credentials(sock)
            self._check_server(uid)
        except BaseException:
            sock.close()
            raise
        self._sock, self._reader = sock, sock.makefile("rb")

    def _check_server(self, uid: int) -> None:
        if self.settings.profile != "production":
            return
        name = self.settings.service_user
        try:
            expected = pwd.getpwnam(name).pw_uid
        except KeyError:
            raise GovernanceUnavailable(
                f"The data service account '{name}' (setting service_user) does not exist on this host, so the governance "
                f"socket {self.path} cannot be trusted. Ask the operator to create it and run the service as it."
            ) from None
        if uid != expected:
            raise GovernanceUnavailable(
                f"The governance socket {self.path} is served by uid {uid}, not by the data service account '{name}' "
                f"(uid {expected}): refusing to send it reads or trust its answers. Ask the operator to check the service."
            )

    def _close(self) -> None:
        for closable in (self._reader, self._sock):
            try:
                if closable is not None:
                    closable.close()
            except OSError:
                pass
        self._sock = self._reader = None

    def _unavailable(self, exc: BaseException) -> GovernanceUnavailable:
        if isinstance(exc, GovernanceUnavailable):
            return exc
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
        return GovernanceUnavailable(
            f"The governance service at {self.path} is not answering ({reason}). Governed reads are refused until it "
            "is back (they are never made without a decision and an audit record). Start it as the data service "
            "account with `python -m workbench.governance serve`, or restart the hub (its service 'governance')."
        )
