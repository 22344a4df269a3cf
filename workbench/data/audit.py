"""The read audit: one JSON line per decision (allowed, denied, refused by the filesystem, failed), one
file per UTC day, every record chained to the one before it by a SHA-256 hash.

Who writes it depends on the profile (see `workbench.governance`):
- `production`: only the governance service, running as the data service account; clients send it
  their events over a Unix socket and it fills in who they are from the socket's peer credentials.
- `local`: the single user's own processes, through the same `AuditStore` code (or the service, if
  `governance_socket` is set).

The store is owner-only: the folder 0700 and the day files 0600, both owned by the writer's account;
it is opened with O_NOFOLLOW and checked (type, owner, mode) before every write, so a symlink, FIFO or
foreign file planted in it is refused with AuditError, never followed, blocked on or appended to.
Each append happens under an exclusive flock (many local processes may write), in one write(), then
fdatasync: a record is on disk before the data it describes is handed out, and a read that cannot be
recorded fails (reads fail closed).

Each record carries `seq` (1, 2, ... across all day files), `prev` (the previous record's `hash`) and
`hash` (SHA-256 of the record's canonical JSON without `hash`), so `verify` names any record that was
edited, removed, inserted or reordered. What the chain cannot show: records cut from the end of the
newest day (nothing follows them); an operator who needs that anchors the newest hash elsewhere.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import AuditError, ConfigError
from ..storage import is_local, local_path

__all__ = [
    "record",
    "query",
    "verify",
    "parse_since",
    "audit_folder",
    "day_file",
    "AuditStore",
    "AuditQuery",
    "Verification",
    "FIELDS",
    "EVENT_FIELDS",
]

# What a client may say about a read (the writer fills in the rest).
EVENT_FIELDS = (
    "dataset",
    "columns",
    "where",
    "level",
    "view",
    "row_filter",
    "purpose",
    "outcome",
    "reason",
    "refers",  # a follow-up (filesystem refusal, error) names the seq of the decision it belongs to
)
IDENTITY_FIELDS = ("user", "groups", "source")
CHAIN_FIELDS = ("seq", "prev", "hash")
FIELDS = ("time", *IDENTITY_FIELDS, *EVENT_FIELDS, "profile", "host", "pid", "uid", "writer", *CHAIN_FIELDS)
OUTCOMES = ("allowed", "denied", "unknown-dataset", "error")
FOLDER_MODE = 0o700
FILE_MODE = 0o600
GENESIS = "0" * 64  # the `prev` of the very first record
TAIL_BLOCK = 65536
_DAY_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl$")


def audit_folder(settings: Settings) -> Path:
    uri = settings.audit_uri
    if not is_local(uri):
        raise ConfigError(
            f"setting 'audit_dir' (from {settings.sources.get('audit_dir', 'default')}) is {uri}: the audit log needs a "
            "local or mounted path (it is appended and fsync'ed per record). Set WORKBENCH_AUDIT_DIR to one."
        )
    if settings.audit_dir and "://" not in settings.audit_dir:
        return settings.path("audit_dir")  # as given: a symlink in its place is refused, not resolved
    return local_path(uri)


def day_file(settings: Settings, when: dt.datetime) -> Path:
    return audit_folder(settings) / _day_name(when)


def _day_name(when: dt.datetime) -> str:
    return f"{when.astimezone(dt.UTC):%Y-%m-%d}.jsonl"


def canonical(entry: dict[str, Any]) -> bytes:
    """The exact bytes of a record's line (without the newline): compact JSON, ASCII only, keys in order."""
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=True, default=list).encode("ascii")


def record_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


# ---- writing ---------------------------------------------------------------------------------
def record(settings: Settings, **fields: Any) -> dict[str, Any]:
    """Record one audit event and return the stored record.

    With a governance service (always in production) the service writes it and fills in who is asking
    from the socket's peer credentials; identity fields given here are then only a claim, kept in
    the local profile and ignored in production. Otherwise this process appends it itself.
    """
    from ..governance_client import service_client

    unknown = set(fields) - set(EVENT_FIELDS) - set(IDENTITY_FIELDS)
    if unknown:
        raise ValueError(f"unknown audit fields: {', '.join(sorted(unknown))}")
    client = service_client(settings)
    if client is not None:
        return client.record(fields)
    return local_store(settings).append(fields, profile=settings.profile)


_stores: dict[Path, AuditStore] = {}
_stores_lock = threading.Lock()


def local_store(settings: Settings) -> AuditStore:
    folder = audit_folder(settings)
    with _stores_lock:
        if folder not in _stores:
            _stores[folder] = AuditStore(folder)
        return _stores[folder]


class AuditStore:
    """The owner-only, hash-chained audit folder, written by this process's account."""

    def __init__(self, folder: Path, writer: str = "in-process"):
        self.folder = Path(folder)
        self.writer = writer
        self._lock = threading.Lock()
        self._head: tuple[str, int, int, int, str] | None = (
            None  # (day file, inode, size, seq, hash) after our last write
        )
        self._open: tuple[str, int, int] | None = None  # (day file, folder fd, file fd), reused while still valid
        self._pid = os.getpid()

    def append(self, fields: dict[str, Any], profile: str, uid: int | None = None) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        entry = dict.fromkeys(FIELDS)
        entry.update({k: v for k, v in fields.items() if k in entry and k not in CHAIN_FIELDS})
        entry.update(
            time=now.isoformat(timespec="microseconds"),
            profile=profile,
            host=socket.gethostname(),
            pid=os.getpid() if fields.get("pid") is None else fields["pid"],
            uid=os.getuid() if uid is None else uid,
            writer=self.writer,
        )
        name = _day_name(now)
        try:
            with self._lock:
                dir_fd, fd = self._open_for(name)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # other processes appending to the same folder wait here
                    try:
                        seq, prev = self._chain_head(dir_fd, fd, name)
                        entry.update(seq=seq + 1, prev=prev, hash=None)
                        entry["hash"] = record_hash(entry)
                        line = canonical(entry) + b"\n"
                        written = os.write(fd, line)
                        if written != len(line):
                            raise OSError(f"short write ({written} of {len(line)} bytes)")
                        os.fdatasync(fd)  # the data and the new size: the record is on disk
                        st = os.fstat(fd)
                        self._head = (name, st.st_ino, st.st_size, entry["seq"], entry["hash"])
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                except BaseException:
                    self._drop()
                    raise
        except AuditError as exc:
            raise AuditError(f"{exc} The read was refused because it could not be recorded.") from None
        except OSError as exc:
            raise AuditError(
                f"Could not append to the audit log in {self.folder} ({exc.__class__.__name__}: {exc.strerror or exc}). "
                "The read was refused because it could not be recorded; check that the audit folder exists and is writable "
                "by this account (setting audit_dir)."
            ) from exc
        return entry

    def _open_for(self, name: str) -> tuple[int, int]:
        """(folder fd, day file fd), kept open between appends while the names still point at them (checked by
        inode on every append: a folder or file swapped, renamed or replaced since is opened and checked anew)."""
        if self._pid != os.getpid():  # a forked child must not share the parent's open file (flock is per open file)
            self._open = None
            self._pid = os.getpid()
        if self._open is not None and self._open[0] == name:
            _, dir_fd, fd = self._open
            try:
                now_dir = os.stat(self.folder, follow_symlinks=False)
                now_file = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                open_dir, open_file = os.fstat(dir_fd), os.fstat(fd)
                if (
                    (now_dir.st_dev, now_dir.st_ino) == (open_dir.st_dev, open_dir.st_ino)
                    and (now_file.st_dev, now_file.st_ino) == (open_file.st_dev, open_file.st_ino)
                    and not _file_problem(open_file)
                ):
                    return dir_fd, fd
            except OSError:
                pass
        self._drop()
        dir_fd = self._open_folder()
        try:
            fd = _open_day_file(dir_fd, self.folder, name, create=True)
        except BaseException:
            os.close(dir_fd)
            raise
        self._open = (name, dir_fd, fd)
        return dir_fd, fd

    def _drop(self) -> None:
        if self._open is not None and self._pid == os.getpid():
            for fd in self._open[1:]:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._open = None

    def _open_folder(self) -> int:
        try:
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            self.folder.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except NotADirectoryError as exc:  # also what O_NOFOLLOW gives for a symlink with O_DIRECTORY
            raise AuditError(
                f"The audit folder {self.folder} is not a folder (or is a symbolic link); reads are refused until it is "
                "a real folder owned by the audit writer's account."
            ) from exc
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid():
                raise AuditError(
                    f"The audit folder {self.folder} belongs to uid {st.st_uid}, not to this writer (uid {os.geteuid()}). "
                    "Only the audit writer's account may own it; in production run reads through the governance service."
                )
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.fchmod(fd, FOLDER_MODE)  # ours: tighten it (older workbenches made it 1733)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _chain_head(self, dir_fd: int, fd: int, name: str) -> tuple[int, str]:
        """(seq, hash) of the newest record, read from the day files unless our cached head is still current."""
        st = os.fstat(fd)
        if self._head and self._head[:3] == (name, st.st_ino, st.st_size):
            return self._head[3], self._head[4]
        if st.st_size:
            last = _last_record(fd, st.st_size)
            if last is not None:
                return last
        for older in sorted((n for n in os.listdir(dir_fd) if _DAY_RE.match(n) and n < name), reverse=True):
            ofd = _open_day_file(dir_fd, self.folder, older, create=False)
            try:
                size = os.fstat(ofd).st_size
                last = _last_record(ofd, size) if size else None
            finally:
                os.close(ofd)
            if last is not None:
                return last
        return 0, GENESIS


def _open_day_file(dir_fd: int, folder: Path, name: str, create: bool) -> int:
    """A day file opened for appending (or reading), refused unless it is a regular file this account owns alone."""
    path = folder / name
    base = (os.O_RDWR | os.O_APPEND if create else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(name, base | (os.O_CREAT if create else 0), FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (40, 6):  # ELOOP: a symlink; ENXIO: a FIFO with no reader
            raise AuditError(
                f"The audit file {path} is a {'symbolic link' if exc.errno == 40 else 'FIFO'}, not a regular file: "
                "someone planted it. Nothing was written; remove it (as the audit writer's account) and check the log "
                "with `workbench data audit --verify`."
            ) from exc
        raise
    try:
        st = os.fstat(fd)
        problem = _file_problem(st)
        if problem:
            raise AuditError(
                f"The audit file {path} is {problem}: someone planted or changed it. Nothing was written; move it aside "
                "(as the audit writer's account) and check the log with `workbench data audit --verify`."
            )
        if create and stat.S_IMODE(st.st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _file_problem(st: os.stat_result) -> str:
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by the audit writer (uid {os.geteuid()})"
    if st.st_nlink != 1:
        return f"hard-linked ({st.st_nlink} names)"
    return ""


def _last_record(fd: int, size: int) -> tuple[int, str] | None:
    """(seq, hash) of the last complete record in the file, reading backwards from the end."""
    block = TAIL_BLOCK
    while True:
        start = max(0, size - block)
        data = os.pread(fd, size - start, start)
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # may be cut
        for line in reversed(lines):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                return int(entry["seq"]), str(entry["hash"])
            except (ValueError, KeyError, TypeError):
                continue  # a record cut short by a crash: verify reports it
        if start == 0:
            return None
        block *= 4


# ---- reading ---------------------------------------------------------------------------------
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
    """Audit records matching every given filter, oldest first. A missing audit folder is an AuditError."""
    folder = _existing_folder(settings)
    records: list[dict[str, Any]] = []
    skipped = 0
    for path in _day_files(folder, since):
        for _, line in _lines(path):
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError
            except ValueError:
                skipped += 1
                continue
            if user and entry.get("user") != user or dataset and entry.get("dataset") != dataset:
                continue
            if outcome and entry.get("outcome") != outcome:
                continue
            if since and dt.datetime.fromisoformat(entry["time"]) < since:
                continue
            records.append(entry)
    records.sort(key=lambda e: (e.get("seq") or 0, e["time"]))
    return AuditQuery(records, skipped)


@dataclass
class Verification:
    folder: Path
    records: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)  # each names the file, line and seq
    last: tuple[int, str] | None = None  # seq and hash of the newest record (anchor it to detect cut-off tails)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(settings: Settings) -> Verification:
    """Walk the chain across every day file; name each record that was edited, removed, inserted or reordered."""
    folder = _existing_folder(settings)
    result = Verification(folder)
    prev_hash, prev_seq = GENESIS, 0
    for path in _day_files(folder, None):
        result.files += 1
        for number, line in _lines(path):
            where = f"{path.name} line {number}"
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError
            except ValueError:
                result.problems.append(f"{where}: not a complete record (edited, or a write cut short by a crash)")
                continue
            result.records += 1
            seq = entry.get("seq")
            where += f" (seq {seq})"
            if canonical(entry) != line.encode("utf-8", "surrogateescape"):
                result.problems.append(f"{where}: the line is not in the form the writer writes: it was edited")
            elif entry.get("hash") != record_hash(entry):
                result.problems.append(f"{where}: its hash does not match its content: the record was edited")
            if entry.get("prev") != prev_hash:
                result.problems.append(
                    f"{where}: does not follow the record before it (prev hash differs): a record before it was "
                    "removed, inserted, reordered or edited"
                )
            if not isinstance(seq, int) or seq != prev_seq + 1:
                result.problems.append(
                    f"{where}: expected seq {prev_seq + 1}: records are missing, inserted or reordered"
                )
            prev_hash, prev_seq = entry.get("hash"), seq if isinstance(seq, int) else prev_seq + 1
    result.last = (prev_seq, prev_hash) if result.records else None
    return result


def _existing_folder(settings: Settings) -> Path:
    folder = audit_folder(settings)
    if not folder.is_dir():
        raise AuditError(
            f"There is no audit log at {folder} (setting audit_dir, from {settings.sources.get('audit_dir', 'default')}). "
            "Point WORKBENCH_AUDIT_DIR at the governance service's audit folder, or run a governed read first."
        )
    return folder


def _day_files(folder: Path, since: dt.datetime | None) -> list[Path]:
    first = since.astimezone(dt.UTC).strftime("%Y-%m-%d") if since else ""
    try:
        names = sorted(os.listdir(folder))
    except PermissionError as exc:
        raise AuditError(
            f"The audit folder {folder} is not readable by this account; query the audit log as its owner "
            "(the data service account) or root."
        ) from exc
    return [folder / n for n in names if (m := _DAY_RE.match(n)) and m.group(1) >= first]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-empty line; a planted FIFO or symlink is refused, never followed or blocked on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as exc:
        raise AuditError(
            f"The audit file {path} is not readable by this account; query the audit log as its owner "
            "(the data service account) or root."
        ) from exc
    except OSError as exc:
        raise AuditError(f"The audit file {path} cannot be opened as a plain file ({exc.strerror}).") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise AuditError(f"The audit file {path} is not a regular file: someone planted it.")
        for number, raw in enumerate(fh, start=1):
            text = raw.rstrip(b"\n").decode("utf-8", "surrogateescape")
            if text.strip():
                yield number, text
