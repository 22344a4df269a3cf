"""The prediction log's write-ahead file: a row acknowledged is on disk, a killed writer's rows are recovered on
the next start exactly once (also when the crash cut a roll short), and a torn tail is ignored. Real processes
killed with SIGKILL; no mocks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from workbench.errors import ServingError
from workbench.serving.predlog import FIXED_COLUMNS, PredictionLog
from workbench.serving.wal import WAL_DIR, read_records

from .test_serving import frame


def logged(plog: PredictionLog) -> pd.DataFrame:
    files = plog.files()
    return pd.concat([pq.read_table(f).to_pandas() for f in files]) if files else pd.DataFrame(columns=FIXED_COLUMNS)


WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from tests.test_serving import frame
    from workbench.serving.predlog import PredictionLog
    plog = PredictionLog({uri!r}, "m", roll_seconds=3600, roll_rows={roll_rows}, durability={durability!r}).start()
    i = 0
    while True:
        plog.submit(frame(4, i))
        print(" ".join(f"r{{k}}" for k in range(i, i + 4)), flush=True)  # acknowledged: submit returned
        i += 4
        time.sleep(0.002)
    """
)


def _run_and_kill(tmp_path, durability: str, roll_rows: int = 1000, lines: int = 60) -> set[str]:
    code = WRITER.format(
        repo=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        uri=tmp_path.as_uri(),
        roll_rows=roll_rows,
        durability=durability,
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked: set[str] = set()
    for _ in range(lines):
        line = proc.stdout.readline()
        assert line, "the writer died"
        acked.update(line.split())
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return acked


@pytest.mark.parametrize("durability", ["ack", "async"])
def test_rows_of_a_killed_writer_are_recovered_exactly_once(tmp_path, durability):
    acked = _run_and_kill(tmp_path, durability, roll_rows=50)
    plog = PredictionLog(tmp_path.as_uri(), "m")
    assert list((plog.folder / WAL_DIR).glob("*.wal")), "the killed writer left its write-ahead segment"
    plog.start()
    plog.close()
    table = logged(plog)
    ids = table.request_id.tolist()
    assert acked <= set(ids)
    assert len(ids) == len(set(ids)), "a row is in the log twice"
    assert not list((plog.folder / WAL_DIR).glob("*.wal"))
    assert tuple(table.columns[: len(FIXED_COLUMNS)]) == FIXED_COLUMNS
    assert plog.recovered_rows >= 1


def test_a_roll_cut_short_by_a_crash_is_redone_without_duplicates(tmp_path):
    acked = _run_and_kill(tmp_path, "ack", roll_rows=100_000, lines=30)
    wal = tmp_path / "m" / WAL_DIR
    (segment,) = list(wal.glob("*.wal"))
    kept = tmp_path / "segment.copy"
    shutil.copy(segment, kept)
    first = PredictionLog(tmp_path.as_uri(), "m").start()  # rolls it, then deletes the segment
    first.close()
    shutil.copy(kept, segment)  # as if the crash came after the parquet rename, before the delete
    second = PredictionLog(tmp_path.as_uri(), "m").start()
    second.close()
    ids = logged(second).request_id.tolist()
    assert set(ids) >= acked and len(ids) == len(set(ids))
    assert not list(wal.glob("*.wal"))


def test_a_torn_record_at_the_tail_is_ignored(tmp_path):
    plog = PredictionLog(tmp_path.as_uri(), "t", roll_seconds=3600)
    plog.submit(frame(3))
    plog.submit(frame(2, 3))
    (segment,) = list((plog.folder / WAL_DIR).glob("*.wal"))
    with open(segment, "ab") as fh:
        fh.write(b"WB\xff\x00\x00\x00half a record")
    assert len(read_records(segment)) == 2


def test_a_live_writers_segment_is_not_taken_by_another_process(tmp_path):
    live = PredictionLog(tmp_path.as_uri(), "l", roll_seconds=3600).start()
    live.submit(frame(3))
    other = PredictionLog(tmp_path.as_uri(), "l")
    assert other.wal.orphans() == []  # locked by `live`
    live.close()
    assert sorted(logged(live).request_id) == ["r0", "r1", "r2"]


def test_durability_is_checked():
    with pytest.raises(ServingError, match="predlog_durability"):
        PredictionLog("/tmp", "x", durability="sometimes")


def test_ack_syncs_once_per_submit_and_async_never_waits(tmp_path):
    ack = PredictionLog(tmp_path.as_uri(), "a").start()
    t0 = time.perf_counter()
    for k in range(20):
        ack.submit(frame(8, 8 * k))
    assert ack.wal.syncs == 20  # group commit: one sync per micro-batch, not per row
    lazy = PredictionLog(tmp_path.as_uri(), "z", durability="async").start()
    for k in range(20):
        lazy.submit(frame(8, 8 * k))
    assert lazy.wal.syncs == 0
    ack.close()
    lazy.close()
    assert len(logged(ack)) == len(logged(lazy)) == 160
    assert time.perf_counter() - t0 < 60


def test_group_commit_one_sync_covers_the_records_appended_before_it(tmp_path):
    """Lanes append and go on; requests await their record's sync. Under concurrency a sync covers several records,
    and no request is released before its record is on disk."""
    import asyncio
    import threading

    plog = PredictionLog(tmp_path.as_uri(), "g", roll_seconds=3600).start()
    seqs: list[int] = []
    lock = threading.Lock()

    def lane(k: int) -> None:
        for i in range(25):
            rids = [f"r{1000 * k + 2 * i}", f"r{1000 * k + 2 * i + 1}"]
            _, seq = plog.append_columns(_fixed(rids), {"x": [1.0, 2.0]}, {"x": "double"}, 2)
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=lane, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def acknowledge():
        for seq in seqs:
            await plog.durable(seq)
            assert plog.wal.synced >= seq  # released only once on disk

    asyncio.run(acknowledge())
    assert len(seqs) == 100 and plog.wal.syncs < 100  # one sync per batch at most, fewer under concurrency
    plog.close()
    assert len(logged(plog)) == 200


def _fixed(rids: list[str]) -> dict:
    n = len(rids)
    return {
        "request_id": rids,
        "entity_id": [None] * n,
        "timestamp": [time.time()] * n,
        "model_version": ["1"] * n,
        "variant": ["champion"] * n,
        "shadow": [False] * n,
        "prediction": [0.5] * n,
        "latency_ms": [1.0] * n,
        "fallback": [False] * n,
        "fallback_reason": [None] * n,
        "out_of_domain": [[] for _ in range(n)],
    }


def test_a_full_queue_is_rolled_at_once_when_its_rows_are_all_in_the_current_segment(tmp_path):
    """queue_rows <= roll_rows: the rows waiting are all in a young segment short of roll_rows. A writer that waits
    for room gets it from a roll made at once, not when the segment is roll_seconds old (under 32 clients every
    request hung until its time budget ran out, then got a 503)."""
    plog = PredictionLog(
        tmp_path.as_uri(), "q", roll_seconds=3600, roll_rows=100, queue_rows=100, block_timeout=30
    ).start()
    for k in range(12):  # 360 rows through a queue of 100, 30 at a time: it fills three times
        status, _ = plog.append_columns(_fixed([f"q{30 * k + i}" for i in range(30)]), {}, {}, 30)
        assert status == "queued"  # before the fix: LogFull after block_timeout, the roll never came
    plog.close()
    assert len(logged(plog)) == 360


def test_a_roll_that_keeps_failing_is_retried_at_a_pace_and_its_rows_kept(tmp_path, monkeypatch):
    """A disk that refuses the parquet file (here: the roll raises OSError) must not spin the roller: it retries
    about once a second, counts the errors, and rolls the rows once the disk takes them again."""
    plog = PredictionLog(tmp_path.as_uri(), "f", roll_seconds=3600, roll_rows=10).start()
    real_roll, calls = plog._roll, []

    def refusing(seg):
        calls.append(seg)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plog, "_roll", refusing)
    plog.append_columns(_fixed([f"f{i}" for i in range(10)]), {}, {}, 10)  # roll_rows reached: sealed, rolled
    time.sleep(2.5)
    assert 1 <= len(calls) <= 6, f"{len(calls)} roll attempts in 2.5 s"
    assert plog.write_errors == len(calls)
    monkeypatch.setattr(plog, "_roll", real_roll)
    plog.close()
    assert len(logged(plog)) == 10
