"""The prediction log: a durable, append-only record of every answered request, as parquet files.

    plog = PredictionLog.from_settings(settings, model_name="flights-late").start()   # recovers a crash first
    plog.submit(frame)                  # pandas rows; or submit_columns(...) from the compiled path
    plog.close()                        # graceful shutdown: everything submitted is in parquet when this returns

Layout: `<predictions_uri>/<model>/date=YYYY-MM-DD/part-<utc time>-<pid>-<seq>.parquet` (Hive-style date
partitions: `spark.read.parquet(".../<model>")` gets a `date` column; the drift monitor reads a window).
Columns: request_id, entity_id, timestamp (UTC, request arrival), model_version, variant, shadow,
prediction, latency_ms, fallback, fallback_reason, out_of_domain (list of column names), then the
decorated feature columns the model saw (double or string).

Durability (`predlog_durability`): every submit appends the rows to the write-ahead file (`wal.py`) in the
caller's thread - one record per micro-batch. With `ack` (the default) the WAL's syncer makes it durable (group
commit: one sync covers every record appended before it); `submit` waits for that, while a lane uses
`append_columns` and goes on, and each request awaits `durable(seq)` before its answer is sent - so no answer
is acknowledged unlogged. With `async` the sync is not awaited (a killed process loses nothing; a power cut can lose the last
seconds). A background roller turns each write-ahead segment into parquet when it is `roll_seconds` old or
holds `roll_rows` rows, and on close: each file is written under a hidden temporary name, fsynced, renamed,
and only then is the segment deleted. On start, the segments of dead processes are rolled first. A file's name
is its segment's, so a roll cut short by a crash is redone without adding a row twice: exactly once.

Backpressure: at most `queue_rows` rows wait to be rolled. When that many are waiting, `on_full="block"`
makes the submitting thread wait (the request is answered only once its row is logged) and has the roller roll
the current segment at once, whatever its age and size (room comes only from rolling), and
`on_full="drop"` drops the rows and counts them in `dropped_rows` (exported as a Prometheus counter).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from ..config import Settings
from ..errors import ServingError
from ..storage import is_local, local_path
from .wal import Segment, WriteAheadLog, _fsync_dir, read_records

__all__ = ["PredictionLog", "FIXED_COLUMNS", "DURABILITY", "LogFull", "QUEUED", "DROPPED", "FULL"]

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
RETRY_SECONDS = 1.0  # a segment whose roll failed is tried again after this long
DURABILITY = ("ack", "async")
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
        durability: str = "ack",
    ):
        if not is_local(uri):
            raise ServingError(
                f"The prediction log supports a local predictions_dir for now; found the URI scheme of "
                f"'{uri.split(':', 1)[0]}'. Set predictions_dir to a local path."
            )
        if on_full not in ("block", "drop"):
            raise ServingError(f"predlog_on_full must be 'block' or 'drop'; found '{on_full}'.")
        if durability not in DURABILITY:
            raise ServingError(f"predlog_durability must be 'ack' or 'async'; found '{durability}'.")
        self.folder = local_path(uri) / model_name
        self.roll_seconds = float(roll_seconds)
        self.roll_rows = int(roll_rows)
        self.queue_rows = int(queue_rows)
        self.on_full = on_full
        self.block_timeout = block_timeout
        self.durability = durability
        self.wal = WriteAheadLog(self.folder, sync=durability == "ack")
        self._waiters: dict = {}  # (seq, loop) -> futures of the requests waiting for record `seq` to be synced
        self._waiters_lock = threading.Lock()
        self.wal.on_synced(self._wake)
        self._queued = 0  # rows submitted and not yet rolled into parquet
        self._retry_at = 0.0  # after a failed roll, sealed segments are retried from this time on (monotonic)
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._sealed: list[Segment] = []  # segments waiting to be rolled (a failed roll is retried)
        self._flush_requested = False
        # counters (read by /metrics)
        self.dropped_rows = 0
        self.written_rows = 0
        self.files_written = 0
        self.write_errors = 0
        self.recovered_rows = 0

    @classmethod
    def from_settings(cls, settings: Settings, model_name: str, **overrides) -> PredictionLog:
        values = dict(
            uri=settings.predictions_uri,
            model_name=model_name,
            roll_seconds=settings.predlog_roll_seconds,
            roll_rows=settings.predlog_roll_rows,
            queue_rows=settings.predlog_queue_rows,
            on_full=settings.predlog_on_full,
            durability=settings.predlog_durability,
        )
        values.update(overrides)
        return cls(**values)

    # ---- request side ---------------------------------------------------------------------------------
    @property
    def queued_rows(self) -> int:
        return self._queued

    def submit(self, frame: pd.DataFrame, block: bool = True) -> str:
        """Log rows given as a frame (FIXED_COLUMNS + feature columns): QUEUED (durable as `durability` says when
        this returns), DROPPED or FULL (see `_submit`)."""
        if len(frame) == 0:
            return QUEUED
        try:
            payload = encode_frame(frame)
        except (TypeError, ValueError) as exc:
            return self._unencodable(len(frame), exc)
        return self._durable_now(*self._submit(payload, len(frame), block))

    def submit_columns(self, fixed: dict, features: dict, types: dict, n: int, block: bool = True) -> str:
        """Log rows given as columns (see `append_columns`), durable as `durability` says when this returns."""
        return self._durable_now(*self.append_columns(fixed, features, types, n, block))

    def append_columns(self, fixed: dict, features: dict, types: dict, n: int, block: bool = True) -> tuple[str, int]:
        """(status, sequence number): the rows are written, not necessarily synced; `await durable(seq)` (or
        `wal.wait(seq)`) before acknowledging them. `fixed`: FIXED_COLUMNS as lists (timestamp in epoch seconds);
        `features`: name -> list or float64 array; `types`: name -> "double" or "string"."""
        if n == 0:
            return QUEUED, 0
        try:
            payload = encode_columns(fixed, features, types, n)
        except (TypeError, ValueError) as exc:  # a bug in what we log must never fail the requests
            return self._unencodable(n, exc), 0
        return self._submit(payload, n, block)

    def _durable_now(self, status: str, seq: int) -> str:
        if seq and not self.wal.wait(seq, self.block_timeout):
            raise LogFull(f"The prediction log could not sync its write-ahead file under {self.folder} in time.")
        return status

    async def durable(self, seq: int) -> None:
        """Return once record `seq` is on disk (at once in mode `async`); for the event loop, no thread held."""
        if not seq or not self.wal.sync or self.wal.synced >= seq:
            return
        import asyncio

        loop = asyncio.get_running_loop()
        with self._waiters_lock:
            if self.wal.synced >= seq:
                return
            future = loop.create_future()
            self._waiters.setdefault((seq, loop), []).append(future)
        await future

    def _wake(self, synced: int) -> None:
        """After a sync: one wake-up per event loop for all the records it covers (not one per request)."""
        by_loop: dict = {}
        with self._waiters_lock:
            for key in [k for k in self._waiters if k[0] <= synced]:
                by_loop.setdefault(key[1], []).extend(self._waiters.pop(key))
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, futures)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def _unencodable(self, n: int, exc: Exception) -> str:
        self.write_errors += 1
        self.dropped_rows += n
        log.error("Prediction log: %d row(s) could not be encoded (%s); dropped and counted.", n, exc)
        return DROPPED

    def _submit(self, payload: bytes, n: int, block: bool) -> tuple[str, int]:
        """(status, seq): QUEUED (written), DROPPED (on_full='drop', counted) or FULL, with the record's number.

        With on_full='block', waits for room and raises LogFull after `block_timeout` seconds, so the caller
        can refuse the request rather than acknowledge it unlogged. block=False never waits: it returns FULL
        instead (an event loop then retries in a thread)."""
        with self._cond:
            if self._closing:
                raise ServingError("The prediction log is closed; the service is shutting down.")
            if self._queued + n > self.queue_rows and self._queued > 0:
                if self.on_full == "drop":
                    self.dropped_rows += n
                    return DROPPED, 0
                if not block:
                    return FULL, 0
                deadline = time.monotonic() + self.block_timeout
                while self._queued + n > self.queue_rows and self._queued > 0 and not self._closing:
                    # Room comes only from rolling, and the roller rolls a segment once it is due or sealed: the
                    # rows waiting may all be in the current segment, short of roll_rows and younger than
                    # roll_seconds (queue_rows <= roll_rows). Ask for it now, or the writers wait for the clock.
                    if self.wal.current_rows:  # (once sealed, a failing roll is retried at the roller's pace)
                        self._flush_requested = True  # what flush() asks for: seal and roll now
                        self._cond.notify_all()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LogFull(
                            f"The prediction log's queue stayed full ({self.queue_rows} rows) for "
                            f"{self.block_timeout:.0f} s: the writer cannot keep up or cannot write to {self.folder}."
                        )
                    self._cond.wait(left)
            self._queued += n
        try:
            seq = self.wal.append(payload, n)
        except OSError as exc:
            with self._cond:
                self._queued -= n
            raise LogFull(
                f"The prediction log cannot append to its write-ahead file under {self.folder} "
                f"({exc.__class__.__name__}); the rows were not logged."
            ) from None
        if self.wal.current_rows >= self.roll_rows:  # seal here: a segment never holds much more than roll_rows
            seg = self.wal.seal()
            with self._cond:
                if seg is not None:
                    self._sealed.append(seg)
                self._cond.notify_all()
        return QUEUED, seq

    def would_block(self, n: int) -> bool:
        return self.on_full == "block" and self._queued + n > self.queue_rows and self._queued > 0

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> PredictionLog:
        """Recover what dead processes left in the write-ahead folder, then start the roller."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        self.recover()
        self._thread = threading.Thread(target=self._run, name="workbench-predlog", daemon=True)
        self._thread.start()
        return self

    def recover(self) -> int:
        """Roll the segments of dead processes into parquet (exactly once); returns the rows recovered."""
        rows = 0
        for seg in self.wal.orphans():
            try:
                rows += self._roll(seg)
            except Exception as exc:
                self.write_errors += 1
                log.error("Prediction log: recovering %s failed (%s); kept for the next start.", seg.path, exc)
                seg.release(delete=False)
                continue
            seg.release(delete=True)
        if rows:
            log.warning("Prediction log: recovered %d row(s) a stopped process left under %s.", rows, self.folder)
        self.recovered_rows += rows
        return rows

    def close(self, timeout: float | None = 60) -> None:
        """Roll everything submitted into parquet, then stop the roller."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 30) -> None:
        """Roll what is logged into parquet now and wait for it (tests, admin)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while self._flush_requested and self._thread is not None and time.monotonic() < deadline:
                self._cond.wait(0.05)

    # ---- roller thread -----------------------------------------------------------------------------------
    def _due(self) -> bool:
        rows = self.wal.current_rows
        return rows > 0 and (rows >= self.roll_rows or self.wal.current_age >= self.roll_seconds)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closing or self._flush_requested or self._due() or self._retry_due()):
                    rows = self.wal.current_rows
                    wait = max(0.01, self.roll_seconds - self.wal.current_age) if rows else 0.5
                    if self._sealed:  # a failed roll: back at its retry time
                        wait = min(wait, max(0.01, self._retry_at - time.monotonic()))
                    self._cond.wait(wait)
                closing, flush_now = self._closing, self._flush_requested
            if closing or flush_now or self._due():
                seg = self.wal.seal()
                if seg is not None:
                    with self._cond:
                        self._sealed.append(seg)
            self._roll_sealed(retries=3 if closing else 1)
            with self._cond:
                if flush_now:
                    self._flush_requested = False
                self._cond.notify_all()
            if closing:
                if self.wal.current_rows:  # appended while closing
                    continue
                if self._sealed:
                    lost = sum(s.rows for s in self._sealed)
                    log.error(
                        "Prediction log: %d row(s) could not be rolled at shutdown; they stay in %s and are "
                        "recovered on the next start.",
                        lost,
                        self.wal.folder,
                    )
                    for seg in self._sealed:
                        seg.release(delete=False)
                return

    def _retry_due(self) -> bool:
        return bool(self._sealed) and time.monotonic() >= self._retry_at

    def _roll_sealed(self, retries: int) -> None:
        with self._cond:
            sealed = list(self._sealed)
        for seg in sealed:
            for attempt in range(retries):
                try:
                    self._roll(seg)
                except Exception as exc:
                    self.write_errors += 1
                    log.error(
                        "Prediction log: rolling %d row(s) under %s failed (%s); kept to retry.",
                        seg.rows,
                        self.folder,
                        exc.__class__.__name__,
                    )
                    time.sleep(1.0 if attempt + 1 < retries else 0)
                    self._retry_at = time.monotonic() + RETRY_SECONDS  # not in a loop: a full disk stays full a while
                    continue
                seg.release(delete=True)
                with self._cond:
                    self._sealed.remove(seg)
                    self._queued -= seg.rows
                    self._cond.notify_all()
                break

    def _roll(self, seg: Segment) -> int:
        """Write the segment's rows as parquet (one file per day, named after the segment); returns the rows."""
        import pyarrow as pa

        tables = []
        for payload in read_records(seg.path):
            try:
                tables.append(decode(payload))
            except Exception as exc:  # a bug in what we logged must never stop the roller
                self.write_errors += 1
                log.error("Prediction log: a record of %s could not be decoded (%s).", seg.path, exc)
        if not tables:
            return 0
        table = _conform(pa.concat_tables(tables, promote_options="permissive"))
        days = pd.Series(table.column("timestamp").to_pandas()).dt.strftime("%Y-%m-%d").fillna("unknown")
        for day in sorted(days.unique()):
            part = table.filter(pa.array((days == day).to_numpy())) if days.nunique() > 1 else table
            self._write_file(part, day, seg.stem)
        self.written_rows += table.num_rows
        return table.num_rows

    def _write_file(self, table, day: str, stem: str) -> Path:
        import pyarrow.parquet as pq

        folder = self.folder / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{stem}.parquet"
        if (folder / name).exists():  # rolled before a crash, the segment not yet deleted: never twice
            return folder / name
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


def _resolve(futures) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


# ---- the record format: one micro-batch's rows as columns, JSON (orjson) -------------------------------------
def encode_columns(fixed: dict, features: dict, types: dict, n: int) -> bytes:
    """One record. Float arrays go as numpy (NaN becomes null); object arrays as lists of str/None."""
    feats = {c: (a.tolist() if isinstance(a, np.ndarray) and a.dtype == object else a) for c, a in features.items()}
    return orjson.dumps({"n": n, "f": fixed, "x": feats, "t": types}, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_frame(frame: pd.DataFrame) -> bytes:
    n = len(frame)
    fixed = {}
    for col in FIXED_COLUMNS:
        if col not in frame.columns:
            fixed[col] = [None] * n
        elif col == "timestamp":
            ts = pd.to_datetime(frame[col], utc=True).astype("datetime64[ns, UTC]")  # whatever unit it came in
            fixed[col] = (ts.astype("int64") / 1e9).where(ts.notna(), None).tolist()
        elif col == "out_of_domain":
            fixed[col] = [list(v) if v is not None else [] for v in frame[col]]
        else:
            values = frame[col].astype(object).where(frame[col].notna(), None).tolist()
            fixed[col] = values
    features, types = {}, {}
    for col in frame.columns:
        if col in FIXED_COLUMNS:
            continue
        s = frame[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            features[col], types[col] = s.to_numpy(dtype="float64", na_value=np.nan), "double"
        else:
            values = s.to_numpy(dtype=object, na_value=None)
            features[col] = [v if v is None or type(v) is str else str(v) for v in values]
            types[col] = "string"
    return encode_columns(fixed, features, types, n)


def decode(payload: bytes):
    """One record as an arrow table (the fixed columns typed as the log's schema)."""
    import pyarrow as pa

    rec = orjson.loads(payload)
    f = rec["f"]
    ts = [None if v is None else round(v * 1e6) for v in f["timestamp"]]
    arrays, names = [], []
    for field in _fixed_schema():
        values = ts if field.name == "timestamp" else f[field.name]
        arrays.append(pa.array(values, type=field.type))
        names.append(field.name)
    for col, values in rec["x"].items():
        arrays.append(pa.array(values, type=pa.float64() if rec["t"].get(col) == "double" else pa.string()))
        names.append(col)
    return pa.Table.from_arrays(arrays, names=names)


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
