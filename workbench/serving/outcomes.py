"""The outcome store: which arm answered each request, the rewards fed back, sticky entities and the allocation
state of an experiment, in one SQLite file next to the prediction log.

    store = OutcomeStore.for_model(settings, "flights-late")      # <predictions>/<model>/_outcomes/outcomes.sqlite
    store.record([Assignment("r1", "plane-7", "challenger", "fragile", time.time())], new_entities=[...])
    problems = store.add_outcomes([Outcome(0, "r1", 1.0)], source="feedback")   # [] when stored (and fsynced)
    store.stats(["champion", "challenger"])                      # [ArmStats, ...] for workbench.bandit

Why SQLite (and not the outcome log replayed at start): `--workers N` are separate processes that must agree on
four things at once - whether a request id exists, whether it was already rewarded (exactly once, even when two
workers get the same id at the same moment), which arm an entity is stuck to, and the current shares. SQLite
gives that with transactions and file locking, in one local file, with nothing else to run; a replayed log would
need its own locking and a replay on every worker. The leading `_` of the folder keeps Spark, pyarrow and pandas
from reading it as part of the prediction log.

Durability, with the prediction log's discipline (`wal.py`): the file is in WAL journal mode. Outcomes are
written by a connection with `synchronous=FULL`, so a commit returns only after the WAL is fsynced; `/feedback`
answers after that commit (acknowledged means durable). Assignments (one row per answered request) are written
by a second connection with `synchronous=NORMAL`, in batches (one transaction per few milliseconds, `experiment.py`): a committed batch
survives a killed process, a power cut can lose the last ones - as `predlog_durability = "async"` - and the next
outcome commit's fsync covers them too. A request id is rewarded once: outcomes are keyed by it, and a batch that holds
an id already rewarded is refused whole (BEGIN IMMEDIATE, so two workers cannot both accept it).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..bandit import ArmStats
from ..config import Settings
from ..errors import ServingError
from ..storage import is_local, local_path

__all__ = ["OutcomeStore", "Assignment", "Outcome", "OUTCOMES_DIR", "FILE_NAME"]

OUTCOMES_DIR = "_outcomes"
FILE_NAME = "outcomes.sqlite"
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assignments (
    request_id TEXT PRIMARY KEY, entity_id TEXT, arm TEXT NOT NULL, shadow TEXT, ts REAL NOT NULL,
    fallback INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS assignments_entity ON assignments (entity_id, ts);
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT PRIMARY KEY, arm TEXT NOT NULL, reward REAL NOT NULL, ts REAL NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS arm_stats (
    arm TEXT PRIMARY KEY, pulls INTEGER NOT NULL DEFAULT 0, n INTEGER NOT NULL DEFAULT 0,
    total REAL NOT NULL DEFAULT 0, total_sq REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS entities (entity_id TEXT PRIMARY KEY, arm TEXT NOT NULL, assigned_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS allocations (ts REAL NOT NULL, outcomes INTEGER NOT NULL, shares TEXT NOT NULL,
    p_best TEXT NOT NULL);
"""


class Assignment(NamedTuple):
    """One answered row: its request id, entity, the arm (variant) that answered, the shadow that also did.

    A named tuple, not a frozen dataclass: one is built per answered row on the event loop (4x cheaper)."""

    request_id: str
    entity_id: str | None
    arm: str
    shadow: str | None
    ts: float
    fallback: bool = False


@dataclass(frozen=True)
class Outcome:
    """One reward to store; `index` is its position in the caller's batch (problems name it)."""

    index: int
    request_id: str
    reward: float
    variant: str | None = None  # optional: the variant the caller believes answered


def problem(code: str, index: int | None, message: str, request_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "message": message}
    if index is not None:
        out["index"] = index
    if request_id is not None:
        out["request_id"] = request_id
    return out


class OutcomeStore:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fast = self._connect("NORMAL")
        self._durable = self._connect("FULL")
        self._fast_lock = threading.Lock()
        self._durable_lock = threading.Lock()
        with self._durable_lock:
            self._durable.executescript(_SCHEMA)

    @classmethod
    def for_model(cls, settings: Settings, model_name: str) -> OutcomeStore:
        uri = settings.predictions_uri
        if not is_local(uri):
            raise ServingError(
                f"The outcome store lives next to the prediction log, which supports a local predictions_dir for "
                f"now; found the URI scheme of '{uri.split(':', 1)[0]}'. Set predictions_dir to a local path."
            )
        return cls(local_path(uri) / model_name / OUTCOMES_DIR / FILE_NAME)

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        if synchronous == "NORMAL":  # the request path's connection never checkpoints (an fsync); `checkpoint` does
            conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    def close(self) -> None:
        for lock, conn in ((self._fast_lock, self._fast), (self._durable_lock, self._durable)):
            with lock:
                conn.close()

    # ---- the request path -------------------------------------------------------------------------------------
    def record(self, rows: list[Assignment], new_entities: list[tuple[str, str, float]] = ()) -> None:
        """Store answered rows (a request id seen again keeps its first arm) and newly stuck entities."""
        if not rows and not new_entities:
            return
        with self._fast_lock:
            conn = self._fast
            conn.execute("BEGIN IMMEDIATE")
            try:
                by_arm: dict[str, list[tuple]] = {}
                for r in rows:
                    by_arm.setdefault(r.arm, []).append(
                        (r.request_id, r.entity_id, r.arm, r.shadow, r.ts, int(r.fallback))
                    )
                for arm, values in by_arm.items():
                    before = conn.total_changes
                    conn.executemany("INSERT OR IGNORE INTO assignments VALUES (?, ?, ?, ?, ?, ?)", values)
                    added = conn.total_changes - before  # a request id seen again keeps its first arm
                    if added:
                        conn.execute(
                            "INSERT INTO arm_stats (arm, pulls) VALUES (?, ?) "
                            "ON CONFLICT(arm) DO UPDATE SET pulls = pulls + excluded.pulls",
                            (arm, added),
                        )
                if new_entities:
                    conn.executemany("INSERT OR REPLACE INTO entities VALUES (?, ?, ?)", list(new_entities))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (fsyncs): run off the request path, e.g. in an executor thread."""
        with self._durable_lock:
            self._durable.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def sticky(self, entity_id: str) -> tuple[str, float] | None:
        """(arm, assigned_at) of a stuck entity, or None."""
        with self._fast_lock:
            row = self._fast.execute(
                "SELECT arm, assigned_at FROM entities WHERE entity_id = ?", (entity_id,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    # ---- outcomes ---------------------------------------------------------------------------------------------
    def add_outcomes(self, items: list[Outcome], source: str, kind: str = "numeric") -> list[dict]:
        """Store rewards for known, not yet rewarded, served (not shadow) request ids - all of them or none.

        Returns the problems (each names its item's index and request id); empty means stored and fsynced."""
        if not items:
            return []
        now = time.time()
        with self._durable_lock:
            conn = self._durable
            conn.execute("BEGIN IMMEDIATE")
            try:
                problems, rows = self._check(conn, items, kind)
                if problems:
                    conn.execute("ROLLBACK")
                    return problems
                conn.executemany(
                    "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?)", [(rid, arm, r, now, source) for rid, arm, r in rows]
                )
                per_arm: dict[str, list[float]] = {}
                for _, arm, r in rows:
                    per_arm.setdefault(arm, []).append(r)
                for arm, rewards in per_arm.items():
                    conn.execute(
                        "INSERT INTO arm_stats (arm, n, total, total_sq) VALUES (?, ?, ?, ?) ON CONFLICT(arm) DO "
                        "UPDATE SET n = n + excluded.n, total = total + excluded.total, "
                        "total_sq = total_sq + excluded.total_sq",
                        (arm, len(rewards), sum(rewards), sum(r * r for r in rewards)),
                    )
                conn.execute("COMMIT")  # synchronous=FULL: the WAL is fsynced before this returns
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return []

    def _check(self, conn, items: list[Outcome], kind: str) -> tuple[list[dict], list[tuple[str, str, float]]]:
        problems, rows = [], []
        ids = [i.request_id for i in items]
        known = _select_in(conn, "SELECT request_id, arm, shadow FROM assignments WHERE request_id IN ({})", ids)
        arms = {rid: (arm, shadow) for rid, arm, shadow in known}
        done = {rid for (rid,) in _select_in(conn, "SELECT request_id FROM outcomes WHERE request_id IN ({})", ids)}
        seen: set[str] = set()
        for item in items:
            rid = item.request_id
            if rid in seen:
                problems.append(
                    problem("DUPLICATE", item.index, "This request_id appears twice in the batch; send it once.", rid)
                )
                continue
            seen.add(rid)
            if rid not in arms:
                problems.append(
                    problem(
                        "UNKNOWN_REQUEST_ID",
                        item.index,
                        "No prediction with this request_id was served by this model; send the request_id of a "
                        "/predict answer.",
                        rid,
                    )
                )
                continue
            arm, shadow = arms[rid]
            if item.variant is not None and item.variant != arm:
                if shadow is not None and item.variant == shadow:
                    message = (
                        f"'{item.variant}' is the shadow of this request: its answer was never returned, so it "
                        f"cannot be rewarded; reward the served variant '{arm}' (leave out 'variant')."
                    )
                    problems.append(problem("SHADOW_ROW", item.index, message, rid))
                else:
                    message = f"This request was answered by '{arm}', not '{item.variant}'; leave out 'variant'."
                    problems.append(problem("WRONG_VARIANT", item.index, message, rid))
                continue
            if rid in done:
                problems.append(
                    problem(
                        "ALREADY_REWARDED", item.index, "This request_id was already rewarded; rewards are once.", rid
                    )
                )
                continue
            if kind == "binary" and item.reward not in (0.0, 1.0):
                problems.append(
                    problem("BAD_REWARD", item.index, "This experiment takes binary rewards: 0 or 1 (or true/false).")
                )
                continue
            rows.append((rid, arm, float(item.reward)))
        return problems, rows

    def latest_unrewarded(self, entity_ids: list[str], before: float | None = None) -> dict[str, str]:
        """{entity_id: request_id} of each entity's latest served request that has no reward yet."""
        out: dict[str, str] = {}
        with self._fast_lock:
            for eid in dict.fromkeys(entity_ids):
                row = self._fast.execute(
                    "SELECT a.request_id FROM assignments a LEFT JOIN outcomes o ON o.request_id = a.request_id "
                    "WHERE a.entity_id = ? AND o.request_id IS NULL AND a.ts <= ? ORDER BY a.ts DESC LIMIT 1",
                    (eid, before if before is not None else math.inf),
                ).fetchone()
                if row:
                    out[eid] = row[0]
        return out

    # ---- statistics and state -----------------------------------------------------------------------------------
    def stats(self, arms: list[str]) -> list[ArmStats]:
        with self._fast_lock:
            found = {r[0]: r for r in self._fast.execute("SELECT arm, pulls, n, total, total_sq FROM arm_stats")}
        return [ArmStats(a, *found[a][1:]) if a in found else ArmStats(a) for a in arms]

    def state(self) -> dict[str, Any]:
        with self._fast_lock:
            rows = self._fast.execute("SELECT key, value FROM state").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def put_state(
        self, values: dict[str, Any], allocation: tuple[int, list, list] | None = None, unless: str | None = None
    ) -> bool:
        """Write state keys (and an allocation history row) in one transaction. With `unless`, nothing is written
        when that key already holds a value (so only one worker records a stop): returns whether it wrote."""
        with self._durable_lock:
            conn = self._durable
            conn.execute("BEGIN IMMEDIATE")
            try:
                if (
                    unless
                    and conn.execute("SELECT 1 FROM state WHERE key = ? AND value != 'null'", (unless,)).fetchone()
                ):
                    conn.execute("ROLLBACK")
                    return False
                conn.executemany(
                    "INSERT OR REPLACE INTO state VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
                )
                if allocation is not None:
                    outcomes, shares, p_best = allocation
                    conn.execute(
                        "INSERT INTO allocations VALUES (?, ?, ?, ?)",
                        (time.time(), outcomes, json.dumps(shares), json.dumps(p_best)),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return True

    def allocations(self) -> list[dict[str, Any]]:
        """The allocation history: {ts, outcomes, shares, p_best} per recomputation, oldest first."""
        with self._fast_lock:
            rows = self._fast.execute("SELECT ts, outcomes, shares, p_best FROM allocations ORDER BY rowid").fetchall()
        return [{"ts": t, "outcomes": n, "shares": json.loads(s), "p_best": json.loads(p)} for t, n, s, p in rows]

    def history(self) -> list[tuple[str, float | None, float]]:
        """(arm, reward or None, ts) of every answered request, in arrival order."""
        with self._fast_lock:
            return self._fast.execute(
                "SELECT a.arm, o.reward, a.ts FROM assignments a LEFT JOIN outcomes o ON o.request_id = a.request_id "
                "ORDER BY a.ts, a.rowid"
            ).fetchall()

    def counts(self) -> dict[str, int]:
        with self._fast_lock:
            a = self._fast.execute("SELECT count(*) FROM assignments").fetchone()[0]
            o = self._fast.execute("SELECT count(*) FROM outcomes").fetchone()[0]
        return {"assignments": a, "outcomes": o}


def _select_in(conn, sql: str, values: list[str], chunk: int = 500) -> list[tuple]:
    out: list[tuple] = []
    for start in range(0, len(values), chunk):
        part = values[start : start + chunk]
        out.extend(conn.execute(sql.format(",".join("?" * len(part))), part).fetchall())
    return out
