"""The prediction log's write-ahead file: where an answered batch's log rows are on disk before its answers go out.

Group commit, as PostgreSQL's WAL does it: a micro-batch's rows are one record, appended with one `write` and made
durable with one `fdatasync` (mode `ack`) before the batch's answers are released; the cost is one sync per batch,
not per request. Mode `async` appends without waiting for the sync (the OS writes it back; a killed process loses
nothing, a machine that loses power can lose the last seconds).

Layout: `<log folder>/_wal/wal-<utc stamp>-<pid>-<seq>.wal` (a leading `_`: Spark, pyarrow and pandas skip the
folder). A record is `MAGIC | length (u32) | crc32 (u32) | payload`; reading stops at the first torn or corrupt
record (a write cut by a crash was never synced, so never acknowledged).

Ownership is an exclusive `flock` held by the writing process on each of its segments until the segment has been
rolled into parquet and deleted. The lock dies with the process, so `orphans()` - the segments whose lock can be
taken - are exactly those a dead process left; the process that takes the lock recovers them (no other can).
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Segment", "WriteAheadLog", "read_records", "WAL_DIR"]

WAL_DIR = "_wal"
MAGIC = b"WB"
_HEADER = struct.Struct("<2sII")


@dataclass
class Segment:
    path: Path
    fd: int
    rows: int = 0
    created: float = 0.0

    @property
    def stem(self) -> str:
        """`<stamp>-<pid>-<seq>`: also the name of the parquet files rolled from it (so a re-roll overwrites, never adds)."""
        return self.path.stem.removeprefix("wal-")

    def release(self, delete: bool) -> None:
        if delete:
            self.path.unlink(missing_ok=True)
        try:
            os.close(self.fd)  # drops the lock
        except OSError:
            pass


class WriteAheadLog:
    """Appends records to the current segment; `seal()` hands the segment over for rolling and starts a new one."""

    def __init__(self, folder: Path, sync: bool = True):
        self.folder = Path(folder) / WAL_DIR
        self.sync = sync
        self._lock = threading.Lock()
        self._current: Segment | None = None
        self._seq = 0
        self.syncs = 0

    def _open(self) -> Segment:
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            self._seq += 1
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            path = self.folder / f"wal-{stamp}-{os.getpid()}-{self._seq:06d}.wal"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
                break
            except FileExistsError:  # a reused pid in the same second
                continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        _fsync_dir(self.folder)  # the segment's name is durable before any record in it is acknowledged
        return Segment(path, fd, 0, time.time())

    def append(self, payload: bytes, rows: int, sync: bool | None = None) -> None:
        """One record; with sync (the default of mode `ack`), on disk when this returns."""
        record = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._current is None:
                self._current = self._open()
            seg = self._current
            os.write(seg.fd, record)
            seg.rows += rows
            if self.sync if sync is None else sync:
                os.fdatasync(seg.fd)
                self.syncs += 1

    @property
    def current_rows(self) -> int:
        seg = self._current
        return seg.rows if seg is not None else 0

    @property
    def current_age(self) -> float:
        seg = self._current
        return time.time() - seg.created if seg is not None else 0.0

    def seal(self) -> Segment | None:
        """The current segment, synced and closed for appends (still locked), or None when empty."""
        with self._lock:
            seg, self._current = self._current, None
        if seg is not None:
            os.fsync(seg.fd)
        return seg

    def orphans(self) -> list[Segment]:
        """Segments of dead processes, locked now by this one (oldest first)."""
        found = []
        for path in sorted(self.folder.glob("wal-*.wal")):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process owns it
                continue
            if not path.exists():  # rolled and deleted between the glob and the lock
                os.close(fd)
                continue
            found.append(Segment(path, fd, 0, path.stat().st_mtime))
        return found


def read_records(path: Path) -> list[bytes]:
    """The complete records of a segment, in order (a torn or corrupt tail is ignored)."""
    data = Path(path).read_bytes()
    out, pos, size = [], 0, _HEADER.size
    while pos + size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, pos)
        start, end = pos + size, pos + size + length
        if magic != MAGIC or end > len(data):
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        out.append(payload)
        pos = end
    return out


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
