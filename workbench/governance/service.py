"""The governance service: decides reads and writes the audit log, for peers it identifies itself.

It listens on the Unix socket `governance_socket` (mode 0666: anyone may ask). For each connection
the kernel tells it the peer's uid (SO_PEERCRED); the peer's account name comes from the password
database and its groups from the users file, which in production must be owned by root (or this
account) and writable by nobody else, like the catalog. So what a peer sends is only what it wants
to read; who it is, what it may see and what is written down are decided here.

Requests, one JSON object per line, answered by one JSON line:
    {"op": "whoami"}                                    -> {"user", "groups", "source"}
    {"op": "decide", "dataset", "columns", "where", "purpose"}  -> a Decision (recorded before answering;
                                                           production: with the folder vended for the read, see reads.py)
    {"op": "record", "fields": {...}}                   -> {"record": stored}   (follow-ups, publish)
Errors come back as {"error": "<WorkbenchError class>", "message"}.

It is the only writer of the audit store (an `AuditStore` owned by this account: folder 0700, files
0600). Run it as the data service account: `python -m workbench.governance serve`, or let the hub
run it (its service 'governance', started as `service_user` in production).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socketserver
import stat
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..config import Settings, load_settings
from ..data.audit import EVENT_FIELDS, AuditStore, audit_folder
from ..data.catalog import LEVEL_FULL, Catalog, load_catalog
from ..data.decision import Decision, decide
from ..data.policy import VIEW_RAW, effective_grant
from ..errors import AccessDenied, ConfigError, LakeError, WorkbenchError
from ..governance_client import MAX_MESSAGE, peer_credentials
from ..hub.users import UsersFile, load_users_file
from ..identity import SOURCE_LOCAL, Identity, identity_for_uid
from .reads import ReadVendor

__all__ = ["GovernanceService", "serve", "main"]

log = logging.getLogger("workbench.governance")
SOCKET_MODE = 0o666
RECENT_DECISIONS = 10000  # allowed decisions a follow-up may still refer to


class GovernanceService:
    """The decisions and the audit writer, without the socket (so they can be tested directly)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = AuditStore(audit_folder(settings), writer="governance-service")
        self._cache: dict[str, tuple[tuple, Any]] = {}
        self._decisions: OrderedDict[int, tuple[int, dict]] = OrderedDict()  # seq -> (uid, record), newest last
        self._lock = threading.Lock()
        self.reads = ReadVendor(settings)
        self.users()  # fail at start, not at the first read, when a file is missing or untrusted
        self.catalog()

    # ---- trusted inputs, re-read when they change -----------------------------------------------
    def users(self) -> UsersFile:
        return self._cached("users", self.settings.path("hub_users_file"), load_users_file)

    def catalog(self) -> Catalog:
        return self._cached("catalog", self.settings.path("catalog_path"), lambda _: load_catalog(self.settings))

    def _cached(self, key: str, path: Path, load):
        st = os.stat(path)
        if self.settings.profile == "production":
            _check_trusted(path, st)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] == stamp:
                return hit[1]
        value = load(path)
        with self._lock:
            self._cache[key] = (stamp, value)
        return value

    # ---- requests -------------------------------------------------------------------------------
    def identity(self, uid: int, claim: dict | None = None) -> Identity:
        if self.settings.profile == "local" and claim:  # the local profile records what the reader says
            return Identity(
                str(claim.get("user") or f"uid{uid}"), tuple(map(str, claim.get("groups") or ())), SOURCE_LOCAL
            )
        return identity_for_uid(uid, self.settings, self.users())

    def handle(self, request: dict[str, Any], pid: int, uid: int) -> dict[str, Any]:
        op = request.get("op")
        try:
            if op == "whoami":
                i = self.identity(uid, request.get("claim"))
                return {"user": i.user, "groups": list(i.groups), "source": i.source}
            if op == "decide":
                identity = self.identity(uid, request.get("claim"))
                decision = decide(
                    self.catalog(),
                    identity,
                    str(request.get("dataset")),
                    _strings(request.get("columns")),
                    _text(request.get("where")),
                    _text(request.get("purpose")),
                    lambda fields: self._append(fields, pid, uid),
                )
                return self._vend(decision, pid, uid).as_dict()
            if op == "record":
                fields = request.get("fields") or {}
                if not isinstance(fields, dict):
                    raise ValueError("fields must be an object")
                identity = self.identity(uid, fields if self.settings.profile == "local" else None)
                event = {k: v for k, v in fields.items() if k in EVENT_FIELDS}
                if uid not in (0, os.geteuid()) and not self._may_publish(identity, event):
                    event.update(self._follow_up_of(uid, event))
                event.update(user=identity.user, groups=list(identity.groups), source=identity.source)
                return {"record": self._append(event, pid, uid)}
            return {"error": "AuditError", "message": f"unknown request '{op}' to the governance service"}
        except WorkbenchError as exc:
            log.warning("request %s from uid %d failed: %s", op, uid, exc.__class__.__name__)
            return {"error": exc.__class__.__name__, "message": str(exc)}
        except (ValueError, TypeError, KeyError) as exc:
            return {
                "error": "AuditError",
                "message": f"malformed request to the governance service ({exc.__class__.__name__})",
            }

    def _vend(self, decision: Decision, pid: int, uid: int) -> Decision:
        """Production: an allowed read of a governed view gets a folder of its own (`reads`), named by the
        decision's seq; a failure to make it is recorded as the decision's outcome and answered as an error."""
        g = decision.grant
        if self.settings.profile != "production" or decision.outcome != "allowed" or g is None or g.view == VIEW_RAW:
            return decision
        try:
            location = self.reads.vend(decision.identity.user, uid, decision.dataset, g.view, decision.seq)
        except (WorkbenchError, OSError) as exc:
            log.error("could not vend a read folder for seq %s: %s", decision.seq, exc)
            i = decision.identity
            self._append(
                dict(
                    user=i.user,
                    groups=list(i.groups),
                    source=i.source,
                    dataset=decision.dataset,
                    level=g.level,
                    view=g.view,
                    row_filter=g.row_filter,
                    outcome="error",
                    reason=f"read folder: {exc.__class__.__name__}",
                    refers=decision.seq,
                ),
                pid,
                uid,
            )
            if isinstance(exc, WorkbenchError):
                raise
            raise LakeError(
                f"The governance service could not prepare the read of '{decision.dataset}' "
                f"({exc.strerror or exc.__class__.__name__}); the operator should check its log."
            ) from None
        return dataclasses.replace(decision, location=location)

    def _append(self, fields: dict[str, Any], pid: int, uid: int) -> dict[str, Any]:
        stored = self.store.append({**fields, "pid": pid}, profile=self.settings.profile, uid=uid)
        if stored.get("outcome") == "allowed" and stored.get("refers") is None:
            with self._lock:
                self._decisions[stored["seq"]] = (uid, stored)
                while len(self._decisions) > RECENT_DECISIONS:
                    self._decisions.popitem(last=False)
        return stored

    def _may_publish(self, identity: Identity, event: dict[str, Any]) -> bool:
        """A publish record from someone with unfiltered full access to the dataset (as `publish` itself requires)."""
        if event.get("purpose") != "publish" or event.get("outcome") != "allowed":
            return False
        catalog = self.catalog()
        ds = catalog.datasets.get(str(event.get("dataset")))
        grant = effective_grant(catalog, ds, identity.groups) if ds else None
        return grant is not None and grant.level == LEVEL_FULL and not grant.row_filter

    def _follow_up_of(self, uid: int, event: dict[str, Any]) -> dict[str, Any]:
        """A reader may add to the log only what became of its own allowed decision (refused, failed); what
        the decision was is copied from it, not taken from the reader."""
        with self._lock:
            uid_and_decision = self._decisions.get(event.get("refers"))
        if event.get("outcome") not in ("denied", "error") or uid_and_decision is None or uid_and_decision[0] != uid:
            raise AccessDenied(
                "Readers may record only the outcome (denied or error) of one of their own recent decisions; "
                "decisions themselves are made and recorded by the governance service."
            )
        decision = uid_and_decision[1]
        return {k: decision.get(k) for k in ("dataset", "level", "view", "row_filter", "where")}


def _check_trusted(path: Path, st: os.stat_result) -> None:
    """Production: the users file and the catalog decide who sees what, so only root or this account may change them."""
    for p, s in ((path, st), (path.parent, os.stat(path.parent))):
        if s.st_uid not in (0, os.geteuid()) or stat.S_IMODE(s.st_mode) & 0o022:
            raise ConfigError(
                f"{p} decides who may read what, but it is owned by uid {s.st_uid} with mode "
                f"{stat.S_IMODE(s.st_mode):o}: in production it must belong to root (or the data service account) and be "
                "writable by nobody else (chown root, chmod go-w)."
            )


def _strings(value) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("columns must be a list")
    return [str(v) for v in value]


def _text(value) -> str | None:
    return None if value is None else str(value)


# ---- the socket -------------------------------------------------------------------------------
class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        pid, uid, _ = peer_credentials(self.connection)
        service: GovernanceService = self.server.service
        while True:
            line = self.rfile.readline(MAX_MESSAGE + 1)
            if not line:
                return
            if not line.endswith(b"\n"):
                self._answer({"error": "AuditError", "message": f"request larger than {MAX_MESSAGE} bytes"})
                return
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError
            except ValueError:
                self._answer({"error": "AuditError", "message": "the request is not a JSON object"})
                continue
            self._answer(service.handle(request, pid, uid))

    def _answer(self, answer: dict) -> None:
        self.wfile.write((json.dumps(answer, default=list) + "\n").encode("utf-8"))
        self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def bind(settings: Settings) -> _Server:
    """Listen on `governance_socket` (replacing a stale socket of ours, never anything else)."""
    if not settings.governance_socket:
        raise ConfigError("Set 'governance_socket' (WORKBENCH_GOVERNANCE_SOCKET) to the path the service listens on.")
    path = settings.path("governance_socket")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
            raise ConfigError(f"{path} exists and is not a socket of this account: remove it or choose another path.")
        path.unlink()
    server = _Server(str(path), _Handler, bind_and_activate=False)
    old = os.umask(0o177)  # the socket is created 0600, then opened to everyone on purpose
    try:
        server.server_bind()
    finally:
        os.umask(old)
    os.chmod(path, SOCKET_MODE)
    server.server_activate()
    return server


def serve(settings: Settings, ready=None) -> None:
    service = GovernanceService(settings)
    if settings.profile == "production":
        service.reads.sweep()
    server = bind(settings)
    server.service = service
    stop = threading.Event()

    def _stop(*_):
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop)
    log.info(
        "governance service on %s (uid %d), audit log %s", server.server_address, os.geteuid(), service.store.folder
    )
    if ready is not None:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        try:
            os.unlink(server.server_address)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["serve"]:
        print("usage: python -m workbench.governance serve", file=sys.stderr)
        return 64
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    try:
        serve(load_settings())
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
