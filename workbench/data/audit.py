"""The read audit: one JSON line per `load`, allowed or denied, in one file per UTC day.

Records are appended with O_APPEND in a single write() under an exclusive flock, then fsync'ed,
so concurrent writers (threads, processes, users) never interleave or lose a record, and a record
is on disk before the data it describes is handed out. A read that cannot be recorded fails
(AuditError): reads fail closed.

The log lives at the `audit_dir` setting (default <lake>/audit), which must be a local or mounted
path. A day file is created with mode 0622 (owner reads; others may only append), so one shared
audit folder (mode 1733, see docs/how-to/data-governance.md) serves every user of a multi-user host.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import AuditError, ConfigError
from ..storage import is_local, local_path

__all__ = ["record", "query", "parse_since", "audit_folder", "day_file", "FIELDS", "AuditQuery"]

FIELDS = (
    "time",
    "user",
    "groups",
    "source",
    "dataset",
    "columns",
    "where",
    "level",
    "view",
    "row_filter",
    "purpose",
    "outcome",
    "reason",
    "profile",
    "host",
    "pid",
)
OUTCOMES = ("allowed", "denied", "unknown-dataset", "error")
FILE_MODE = 0o622
_DAY_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl$")


def audit_folder(settings: Settings) -> Path:
    uri = settings.audit_uri
    if not is_local(uri):
        raise ConfigError(
            f"setting 'audit_dir' (from {settings.sources.get('audit_dir', 'default')}) is {uri}: the audit log needs a "
            "local or mounted path (it is appended and fsync'ed per record). Set WORKBENCH_AUDIT_DIR to one."
        )
    return local_path(uri)


def day_file(settings: Settings, when: dt.datetime) -> Path:
    return audit_folder(settings) / f"{when.astimezone(dt.UTC):%Y-%m-%d}.jsonl"


def record(settings: Settings, **fields: Any) -> dict[str, Any]:
    """Append one audit record (fields from FIELDS; time, host and pid are filled in) and return it."""
    now = dt.datetime.now(dt.UTC)
    entry = dict.fromkeys(FIELDS)
    entry.update(
        time=now.isoformat(timespec="microseconds"),
        host=socket.gethostname(),
        pid=os.getpid(),
        profile=settings.profile,
    )
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown audit fields: {', '.join(sorted(unknown))}")
    entry.update(fields)
    line = (json.dumps(entry, default=list, separators=(",", ":")) + "\n").encode("utf-8")
    path = day_file(settings, now)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_append(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
    except OSError as exc:
        raise AuditError(
            f"Could not append to the audit log {path} ({exc.__class__.__name__}: {exc.strerror or exc}). "
            "The read was refused because it could not be recorded; check that the audit folder exists and is writable "
            "(setting audit_dir)."
        ) from exc
    return entry


def _open_append(path: Path) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return os.open(path, flags)
    try:
        os.fchmod(fd, FILE_MODE)  # independent of the umask
    except OSError:
        pass
    return fd


# ---- querying --------------------------------------------------------------------------------
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """'2h', '7d', '30m', an ISO date ('2024-05-01') or datetime ('2024-05-01T12:00', UTC unless an offset is given)."""
    now = now or dt.datetime.now(dt.UTC)
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        return now - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"'since' expects a duration such as 2h or 7d, or an ISO date or time such as 2024-05-01 or "
            f"2024-05-01T12:00; found '{text}'."
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@dataclass
class AuditQuery:
    records: list[dict[str, Any]]
    skipped_lines: int  # lines that are not JSON (a record cut short by a crash); reported, never fatal


def query(
    settings: Settings,
    user: str | None = None,
    dataset: str | None = None,
    since: dt.datetime | None = None,
    outcome: str | None = None,
) -> AuditQuery:
    """Audit records matching every given filter, oldest first."""
    folder = audit_folder(settings)
    records: list[dict[str, Any]] = []
    skipped = 0
    for path in _day_files(folder, since):
        for line in _lines(path):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if user and entry.get("user") != user or dataset and entry.get("dataset") != dataset:
                continue
            if outcome and entry.get("outcome") != outcome:
                continue
            if since and dt.datetime.fromisoformat(entry["time"]) < since:
                continue
            records.append(entry)
    records.sort(key=lambda e: e["time"])
    return AuditQuery(records, skipped)


def _day_files(folder: Path, since: dt.datetime | None) -> list[Path]:
    if not folder.is_dir():
        return []
    first = since.astimezone(dt.UTC).strftime("%Y-%m-%d") if since else ""
    out = []
    for child in sorted(folder.iterdir()):
        match = _DAY_RE.match(child.name)
        if match and match.group(1) >= first:
            out.append(child)
    return out


def _lines(path: Path) -> Iterator[str]:
    try:
        with path.open("r", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield line
    except PermissionError as exc:
        raise AuditError(
            f"The audit file {path} is not readable by this account; query the audit log as its owner "
            "(the data service account or a steward)."
        ) from exc
