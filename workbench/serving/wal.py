"""The prediction log's write-ahead file: where an answered batch's log rows are on disk before its answers go out.

Group commit, as PostgreSQL's WAL does it: a micro-batch's rows are one record, appended with one `write`; a syncer
thread runs `fdatasync` as soon as something new is appended, and one sync covers every record appended before it
(mode `ack`). `append` returns the record's sequence number; `wait(seq)` (a thread) or `on_synced` (a callback, for
an event loop) learns when it is durable. So a lane computes its next batch while the previous one is being synced,
and the batch's answers are released only once its record is on disk: at most one sync per batch, often fewer. Mode `async` appends without waiting for the sync (the OS writes it back; a killed process loses
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
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Segment", "WriteAheadLog", "read_records", "WAL_DIR"]

log = logging.getLogger("workbench.serving.predlog")

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
        self.appended = 0  # sequence number of the last record appended
        self.synced = 0  # every record up to this one is on disk
        self._sync_cond = threading.Condition()
        self._syncer: threading.Thread | None = None
        self._listeners: list = []  # callables(synced) run by the syncer after each sync

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

    def append(self, payload: bytes, rows: int) -> int:
        """Write one record; returns its sequence number (durable once `synced` reaches it, in mode `ack`)."""
        record = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._current is None:
                self._current = self._open()
            seg = self._current
            os.write(seg.fd, record)
            seg.rows += rows
            self.appended += 1
            seq = self.appended
        if self.sync:
            with self._sync_cond:
                if self._syncer is None:
                    self._syncer = threading.Thread(target=self._sync_loop, name="workbench-wal-sync", daemon=True)
                    self._syncer.start()
                self._sync_cond.notify_all()
        return seq

    def wait(self, seq: int, timeout: float = 60.0) -> bool:
        """Block until record `seq` is on disk (mode `ack`); True unless the timeout passed first."""
        if not self.sync:
            return True
        deadline = time.monotonic() + timeout
        with self._sync_cond:
            while self.synced < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._sync_cond.wait(left)
        return True

    def on_synced(self, listener) -> None:
        """Call `listener(synced)` (from the syncer thread) after every sync."""
        self._listeners.append(listener)

    def _sync_loop(self) -> None:
        while True:
            with self._sync_cond:
                while self.appended <= self.synced:
                    self._sync_cond.wait()
            with self._lock:  # a duplicate of the segment's fd, so a seal and roll meanwhile cannot close it
                target = self.appended
                fd = os.dup(self._current.fd) if self._current is not None else None
            if fd is not None:
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
                self.syncs += 1
            with self._sync_cond:
                self.synced = max(self.synced, target)
                self._sync_cond.notify_all()
            for listener in list(self._listeners):
                try:
                    listener(target)
                except Exception:  # a listener's fault must not stop the syncer
                    log.exception("A write-ahead sync listener failed")

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
        with self._lock:  # synced under the lock: the syncer never counts a record of it before it is on disk
            seg, self._current = self._current, None
            target = self.appended
            if seg is not None:
                os.fsync(seg.fd)
        if seg is not None:
            with self._sync_cond:  # everything appended to it is durable now
                self.synced = max(self.synced, target)
                self._sync_cond.notify_all()
            for listener in list(self._listeners):
                try:
                    listener(target)
                except Exception:  # a listener's fault must not stop the syncer
                    log.exception("A write-ahead sync listener failed")
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
