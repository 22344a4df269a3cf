"""The prediction log: a durable, append-only record of every answered request, as parquet files.

    plog = PredictionLog.from_settings(settings, model_name="flights-late").start()
    plog.submit(frame)        # from a batch thread; block or drop when the queue is full (see `on_full`)
    plog.close()              # graceful shutdown: everything submitted is on disk when this returns

Layout: `<predictions_uri>/<model>/date=YYYY-MM-DD/part-<utc time>-<pid>-<seq>.parquet` (Hive-style date
partitions: `spark.read.parquet(".../<model>")` gets a `date` column; the drift monitor reads a window).
Columns: request_id, entity_id, timestamp (UTC, request arrival), model_version, variant, shadow,
prediction, latency_ms, fallback, fallback_reason, out_of_domain (list of column names), then the
decorated feature columns the model saw (double or string).

Durability: a background thread collects rows in memory and writes a file when the current one is
`roll_seconds` old or holds `roll_rows` rows, and on close. Each file is written under a hidden temporary
name (`.part-....parquet.tmp`, which Spark, pyarrow and pandas ignore), fsynced, then renamed: a reader
(or a SIGKILL) never sees half a file. A crash loses at most the rows not yet rolled into a file; a
graceful shutdown loses none. Leftover temporary files of dead processes are removed on start.

Backpressure: the queue between the request path and the writer holds at most `queue_rows` rows.
When it is full, `on_full="block"` makes the submitting thread wait (the request is answered only once
its row is queued: no acknowledged request is missing from the log), and `on_full="drop"` drops the
rows and counts them in `dropped_rows` (exported as a Prometheus counter). Never silently.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from pathlib import Path

import pandas as pd

from ..config import Settings
from ..errors import ServingError
from ..storage import is_local, local_path

__all__ = ["PredictionLog", "FIXED_COLUMNS", "LogFull", "QUEUED", "DROPPED", "FULL"]

log = logging.getLogger("workbench.serving.predlog")

FIXED_COLUMNS = (
    "request_id",
    "entity_id",
    "timestamp",
    "model_version",
    "variant",
    "shadow",
    "prediction",
    "latency_ms",
    "fallback",
    "fallback_reason",
    "out_of_domain",
)
QUEUED, DROPPED, FULL = "queued", "dropped", "full"
_TMP_RE = re.compile(r"^\.part-.*-(\d+)-\d+\.parquet\.tmp$")


class LogFull(ServingError):
    """The prediction log's queue stayed full for longer than the block timeout."""


def _fixed_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("request_id", pa.string()),
            ("entity_id", pa.string()),
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("model_version", pa.string()),
            ("variant", pa.string()),
            ("shadow", pa.bool_()),
            ("prediction", pa.float64()),
            ("latency_ms", pa.float64()),
            ("fallback", pa.bool_()),
            ("fallback_reason", pa.string()),
            ("out_of_domain", pa.list_(pa.string())),
        ]
    )


class PredictionLog:
    def __init__(
        self,
        uri: str,
        model_name: str,
        roll_seconds: float = 60,
        roll_rows: int = 100_000,
        queue_rows: int = 100_000,
        on_full: str = "block",
        block_timeout: float = 30.0,
    ):
        if not is_local(uri):
            raise ServingError(
                f"The prediction log supports a local predictions_dir for now; found the URI scheme of "
                f"'{uri.split(':', 1)[0]}'. Set predictions_dir to a local path."
            )
        if on_full not in ("block", "drop"):
            raise ServingError(f"predlog_on_full must be 'block' or 'drop'; found '{on_full}'.")
        self.folder = local_path(uri) / model_name
        self.roll_seconds = float(roll_seconds)
        self.roll_rows = int(roll_rows)
        self.queue_rows = int(queue_rows)
        self.on_full = on_full
        self.block_timeout = block_timeout
        self._queue: deque = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._buffer: list = []  # arrow tables of the current (unwritten) file
        self._buffer_rows = 0
        self._buffer_started = 0.0
        self._flush_requested = False
        # counters (read by /metrics)
        self.dropped_rows = 0
        self.written_rows = 0
        self.files_written = 0
        self.write_errors = 0

    @classmethod
    def from_settings(cls, settings: Settings, model_name: str, **overrides) -> PredictionLog:
        values = dict(
            uri=settings.predictions_uri,
            model_name=model_name,
            roll_seconds=settings.predlog_roll_seconds,
            roll_rows=settings.predlog_roll_rows,
            queue_rows=settings.predlog_queue_rows,
            on_full=settings.predlog_on_full,
        )
        values.update(overrides)
        return cls(**values)

    # ---- request side ---------------------------------------------------------------------------------
    @property
    def queued_rows(self) -> int:
        return self._queued

    def submit(self, frame: pd.DataFrame, block: bool = True) -> str:
        """Queue rows for the log: returns QUEUED, DROPPED (on_full='drop', counted) or FULL.

        With on_full='block', waits for room and raises LogFull after `block_timeout` seconds, so the caller
        can refuse the request rather than acknowledge it unlogged. block=False never waits: it returns FULL
        instead (an event loop then retries in a thread)."""
        n = len(frame)
        if n == 0:
            return QUEUED
        with self._cond:
            if self._closing:
                raise ServingError("The prediction log is closed; the service is shutting down.")
            if self._queued + n > self.queue_rows and self._queued > 0:
                if self.on_full == "drop":
                    self.dropped_rows += n
                    return DROPPED
                if not block:
                    return FULL
                deadline = time.monotonic() + self.block_timeout
                while self._queued + n > self.queue_rows and self._queued > 0 and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LogFull(
                            f"The prediction log's queue stayed full ({self.queue_rows} rows) for "
                            f"{self.block_timeout:.0f} s: the writer cannot keep up or cannot write to {self.folder}."
                        )
                    self._cond.wait(left)
            self._queue.append(frame)
            self._queued += n
            self._cond.notify_all()
        return QUEUED

    def would_block(self, n: int) -> bool:
        return self.on_full == "block" and self._queued + n > self.queue_rows and self._queued > 0

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> PredictionLog:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        self._thread = threading.Thread(target=self._run, name="workbench-predlog", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float | None = 60) -> None:
        """Write everything queued and buffered, then stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 30) -> None:
        """Wait until the queue is empty and write the current buffer as a file now (tests, admin)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while (self._queued or self._flush_requested) and time.monotonic() < deadline:
                self._cond.wait(0.05)

    # ---- writer thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing and not self._flush_requested:
                    timeout = None
                    if self._buffer:
                        timeout = max(0.0, self._buffer_started + self.roll_seconds - time.time())
                        if timeout == 0.0:
                            break
                    self._cond.wait(timeout)
                items = list(self._queue)
                self._queue.clear()
                closing = self._closing
                flush_now = self._flush_requested
            for frame in items:
                self._add(frame)
            with self._cond:
                self._queued -= sum(len(f) for f in items)
                self._cond.notify_all()
            due = self._buffer and (
                self._buffer_rows >= self.roll_rows or time.time() - self._buffer_started >= self.roll_seconds
            )
            if due or ((closing or flush_now) and self._buffer):
                self._write_buffer()
            if flush_now:
                with self._cond:
                    self._flush_requested = False
                    self._cond.notify_all()
            if closing:
                with self._cond:
                    if self._queue:
                        continue
                for _ in range(3):  # a failed final write is retried before giving up (logged)
                    if not self._buffer:
                        break
                    self._write_buffer()
                if self._buffer:
                    self.dropped_rows += self._buffer_rows
                    log.error("Prediction log: %d row(s) could not be written at shutdown.", self._buffer_rows)
                return

    def _add(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        try:
            table = pa.Table.from_pandas(_normalise(frame), preserve_index=False)
        except Exception as exc:  # a bug in what we log must never stop the writer
            self.write_errors += 1
            self.dropped_rows += len(frame)
            log.error(
                "Prediction log: %d row(s) could not be converted (%s); dropped and counted.",
                len(frame),
                exc.__class__.__name__,
            )
            return
        if not self._buffer:
            self._buffer_started = time.time()
        self._buffer.append(table)
        self._buffer_rows += table.num_rows
        if self._buffer_rows >= self.roll_rows:
            self._write_buffer()

    def _write_buffer(self) -> None:
        import pyarrow as pa

        tables, self._buffer, rows = self._buffer, [], self._buffer_rows
        self._buffer_rows = 0
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
            table = _conform(table)
            days = pd.Series(table.column("timestamp").to_pandas()).dt.strftime("%Y-%m-%d").fillna("unknown")
            for day in sorted(days.unique()):
                part = table.filter(pa.array((days == day).to_numpy())) if days.nunique() > 1 else table
                self._write_file(part, day)
            self.written_rows += rows
        except Exception as exc:
            self.write_errors += 1
            log.error(
                "Prediction log: writing %d row(s) under %s failed (%s); keeping them to retry.",
                rows,
                self.folder,
                exc.__class__.__name__,
            )
            self._buffer, self._buffer_rows = tables + self._buffer, rows + self._buffer_rows
            time.sleep(1.0)

    def _write_file(self, table, day: str) -> Path:
        import pyarrow.parquet as pq

        folder = self.folder / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"part-{stamp}-{os.getpid()}-{self._seq:06d}.parquet"
        tmp = folder / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
        _fsync_dir(folder)
        self.files_written += 1
        return folder / name

    def _remove_stale_temporaries(self) -> None:
        for tmp in self.folder.glob("date=*/.part-*.parquet.tmp"):
            match = _TMP_RE.match(tmp.name)
            if match and not _alive(int(match.group(1))):
                tmp.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        """The complete files written so far (all processes), oldest first."""
        return sorted(self.folder.glob("date=*/part-*.parquet"))


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Feature columns as float64 or string (None for missing), fixed columns as they are."""
    out = frame.copy(deep=False)
    for col in out.columns:
        if col in FIXED_COLUMNS:
            continue
        s = out[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[col] = s
        else:
            out[col] = s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v))
    return out


def _conform(table):
    """Cast the fixed columns to the log's schema and put them first; feature columns follow, sorted."""
    import pyarrow as pa

    fixed = _fixed_schema()
    columns, fields = [], []
    for f in fixed:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type, safe=False))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
        fields.append(f)
    for name in sorted(c for c in table.column_names if c not in fixed.names):
        columns.append(table.column(name))
        fields.append(pa.field(name, table.schema.field(name).type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
