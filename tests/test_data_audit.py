"""The read audit: every load, allowed or denied, leaves a complete record; concurrent writers never
interleave or lose records; reads fail closed when they cannot be recorded; the CLI queries it."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from workbench.data import load
from workbench.data.audit import FIELDS, day_file, parse_since, query, record, verify
from workbench.errors import AccessDenied, AuditError, ConfigError


@pytest.fixture
def settings(repo_settings, tmp_path):
    return repo_settings.with_overrides(
        audit_dir=str(tmp_path / "audit"),
        governed_dir=str(tmp_path / "governed"),
        user="alice",
        groups=("jfk-operations",),
    )


def test_allowed_and_denied_reads_are_recorded_with_every_field(settings, spark):
    load(
        "flights",
        columns=["origin", "tailnum"],
        where="month = 3",
        purpose="delay study",
        settings=settings,
        spark=spark,
    )
    with pytest.raises(AccessDenied):
        load(
            "flights",
            purpose="curious",
            settings=settings.with_overrides(user="bob", groups=("stakeholders",)),
            spark=spark,
        )
    records = query(settings).records
    assert [r["outcome"] for r in records] == ["allowed", "denied"]
    allowed, denied = records
    assert set(allowed) == set(FIELDS)
    assert (
        allowed["user"] == "alice"
        and allowed["groups"] == ["jfk-operations"]
        and allowed["source"] == "local-unverified"
    )
    assert (allowed["dataset"], allowed["columns"], allowed["where"], allowed["purpose"]) == (
        "flights",
        ["origin", "tailnum"],
        "month = 3",
        "delay study",
    )
    assert (allowed["level"], allowed["view"], allowed["row_filter"]) == (
        "masked",
        "filtered-jfk-operations",
        "origin = 'JFK'",
    )
    assert (denied["user"], denied["level"], denied["purpose"], denied["reason"]) == (
        "bob",
        "none",
        "curious",
        "no grant",
    )
    assert dt.datetime.fromisoformat(allowed["time"]).tzinfo is not None
    path = day_file(settings, dt.datetime.now(dt.UTC))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # owner-only: nobody else reads, appends or truncates
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_read_that_cannot_be_recorded_is_refused(settings, spark, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(AuditError, match="could not be recorded"):
        load("airlines", settings=settings.with_overrides(audit_dir=str(blocker / "audit")), spark=spark)


WRITER = """
import sys
from pathlib import Path
from workbench.config import load_settings
from workbench.data.audit import record
s = load_settings(audit_dir=sys.argv[1])
for i in range(int(sys.argv[2])):
    record(s, user=sys.argv[3], dataset="flights", purpose="x" * 3000 + str(i), outcome="allowed")
"""


def test_concurrent_writers_never_interleave_or_lose_records(settings):
    folder, writers, each = str(settings.path("audit_dir")), 4, 150
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, folder, str(each), f"writer{w}"], env=env)
        for w in range(writers)
    ]
    for _ in range(each):  # and this process writes at the same time
        record(settings, user="main", dataset="flights", outcome="allowed")
    assert all(p.wait(timeout=300) == 0 for p in procs)
    lines = [l for p in settings.path("audit_dir").iterdir() for l in p.read_text().splitlines()]
    parsed = [json.loads(l) for l in lines]  # every line is one whole record (each is > 3 kB)
    assert len(parsed) == (writers + 1) * each
    for w in range(writers):
        purposes = {r["purpose"] for r in parsed if r["user"] == f"writer{w}"}
        assert purposes == {"x" * 3000 + str(i) for i in range(each)}
    result = verify(settings)  # five processes appended at once, and the chain has no gap or fork
    assert result.ok, result.problems[:3]
    assert result.records == (writers + 1) * each and result.last[0] == (writers + 1) * each


def test_query_filters_by_user_dataset_and_time(settings):
    record(settings, user="alice", dataset="flights", outcome="allowed")
    record(settings, user="bob", dataset="planes", outcome="denied")
    folder = settings.path("audit_dir")
    old = dict.fromkeys(FIELDS) | {
        "time": "2020-01-02T03:04:05+00:00",
        "user": "alice",
        "dataset": "flights",
        "outcome": "allowed",
    }
    (folder / "2020-01-02.jsonl").write_text(
        json.dumps(old) + "\n" + '{"time": "2020-01-02T04:00:00+00:0'
    )  # a torn last line
    assert len(query(settings).records) == 3 and query(settings).skipped_lines == 1
    assert [r["dataset"] for r in query(settings, user="bob").records] == ["planes"]
    assert [r["user"] for r in query(settings, dataset="flights").records] == ["alice", "alice"]
    assert len(query(settings, since=parse_since("1h")).records) == 2
    assert len(query(settings, since=parse_since("2020-01-02T03:00")).records) == 3
    assert len(query(settings, user="alice", since=parse_since("2021-01-01")).records) == 1
    with pytest.raises(ConfigError, match="'since' expects a duration"):
        parse_since("last tuesday")


def test_audit_command_prints_matching_records(settings, monkeypatch, capsys):
    from workbench.cli import main

    record(settings, user="alice", dataset="flights", level="masked", outcome="allowed", purpose="report")
    record(settings, user="bob", dataset="flights", level="none", outcome="denied")
    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_AUDIT_DIR", str(settings.path("audit_dir")))
    assert main(["data", "audit", "--user", "bob", "--dataset", "flights", "--since", "10m", "--json"]) == 0
    out = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [(r["user"], r["outcome"]) for r in out] == [("bob", "denied")]
    assert main(["data", "audit", "--dataset", "flights"]) == 0
    text = capsys.readouterr().out
    assert "alice" in text and "denied" in text and "purpose=report" in text


# ---- the hash chain: `verify` names what was changed ---------------------------------------------
def _log(settings, n=4) -> Path:
    for i in range(n):
        record(settings, user="alice", dataset="flights", outcome="allowed", purpose=f"read {i}")
    return day_file(settings, dt.datetime.now(dt.UTC))


def test_verify_says_an_untouched_log_is_intact(settings, monkeypatch, capsys):
    from workbench.cli import main

    _log(settings)
    result = verify(settings)
    assert result.ok and result.records == 4 and result.last[0] == 4
    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_AUDIT_DIR", str(settings.path("audit_dir")))
    assert main(["data", "audit", "--verify"]) == 0
    assert "intact, 4 record(s)" in capsys.readouterr().out


def test_changing_any_byte_of_a_past_record_is_named(settings):
    path = _log(settings)
    original = path.read_bytes()
    lines = original.split(b"\n")
    start = len(lines[0]) + 1
    second = lines[1] + b"\n"  # every byte of record 2, its newline included
    for offset in range(len(second)):
        byte = original[start + offset]
        changed = bytearray(original)
        changed[start + offset] = ord("x") if byte != ord("x") else ord("y")
        path.write_bytes(bytes(changed))
        problems = verify(settings).problems
        assert problems and problems[0].startswith(f"{path.name} line 2"), (offset, problems)
    path.write_bytes(original)
    assert verify(settings).ok


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda ls: ls[:1] + ls[2:], "line 2 (seq 3)"),  # removed
        (lambda ls: ls[:2] + [ls[1]] + ls[2:], "line 3 (seq 2)"),  # inserted (a copy of a real record)
        (lambda ls: [ls[0], ls[2], ls[1], ls[3]], "line 2 (seq 3)"),  # reordered
    ],
    ids=["removed", "inserted", "reordered"],
)
def test_removed_inserted_or_reordered_records_are_named(settings, change, named):
    path = _log(settings)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")
    problems = verify(settings).problems
    assert problems and problems[0].startswith(f"{path.name} {named}"), problems


def test_the_chain_runs_across_day_files(settings):
    path = _log(settings, 2)
    older = path.with_name("2020-01-01.jsonl")
    path.rename(older)  # yesterday's records, then today's continue the chain
    record(settings, user="alice", dataset="flights", outcome="allowed")
    today = [json.loads(l) for l in path.read_text().splitlines()]
    assert today[0]["seq"] == 3 and today[0]["prev"] == json.loads(older.read_text().splitlines()[-1])["hash"]
    assert verify(settings).ok
    older.write_text(older.read_text().splitlines()[0] + "\n")  # the older day's last record cut off
    problems = verify(settings).problems
    assert problems and problems[0].startswith(f"{path.name} line 1 (seq 3)")


def test_verify_on_a_tampered_log_fails_the_command(settings, monkeypatch, capsys):
    from workbench.cli import main

    path = _log(settings)
    path.write_text(path.read_text().replace("read 1", "read 7"))
    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_AUDIT_DIR", str(settings.path("audit_dir")))
    assert main(["data", "audit", "--verify"]) != 0
    out = capsys.readouterr().out
    assert f"TAMPERED {path.name} line 2 (seq 2)" in out


# ---- the store refuses what someone planted in it ------------------------------------------------
def test_a_fifo_at_the_day_file_is_refused_at_once_not_blocked_on(settings):
    path = day_file(settings, dt.datetime.now(dt.UTC))
    path.parent.mkdir(parents=True, mode=0o700)
    os.mkfifo(path, 0o600)
    started = time.monotonic()
    with pytest.raises(AuditError, match="FIFO|not a regular file"):
        record(settings, user="alice", dataset="flights", outcome="allowed")
    assert time.monotonic() - started < 5


def test_a_symlink_at_the_day_file_is_never_followed(settings, tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("")
    path = day_file(settings, dt.datetime.now(dt.UTC))
    path.parent.mkdir(parents=True, mode=0o700)
    path.symlink_to(target)
    with pytest.raises(AuditError, match="symbolic link"):
        record(settings, user="alice", dataset="flights", outcome="allowed")
    assert target.read_text() == ""


def test_a_symlinked_audit_folder_is_refused(settings, tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    settings.path("audit_dir").symlink_to(tmp_path / "real")
    with pytest.raises(AuditError, match="symbolic link|not a folder"):
        record(settings, user="alice", dataset="flights", outcome="allowed")
    assert not list((tmp_path / "real").iterdir())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another account")
def test_a_day_file_or_folder_of_another_account_is_refused(settings):
    path = day_file(settings, dt.datetime.now(dt.UTC))
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_text("")
    os.chown(path, 65534, 65534)  # nobody pre-created today's file
    with pytest.raises(AuditError, match="owned by uid 65534"):
        record(settings, user="alice", dataset="flights", outcome="allowed")
    path.unlink()
    os.chown(path.parent, 65534, 65534)
    with pytest.raises(AuditError, match="belongs to uid 65534"):
        record(settings, user="alice", dataset="flights", outcome="allowed")


def test_an_old_open_audit_folder_of_ours_is_tightened(settings):
    folder = settings.path("audit_dir")
    folder.mkdir()
    folder.chmod(0o1733)  # what earlier workbenches made
    record(settings, user="alice", dataset="flights", outcome="allowed")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# ---- the text view: escaped, complete, and loud when there is no log -----------------------------
def test_the_text_view_escapes_control_characters_and_shows_where_and_source(settings, monkeypatch, capsys):
    from workbench.cli import main

    forged = "x\n2026-01-01T00:00:00  allowed  mallory  flights  level=full\x1b[2K\x1b[1A"
    record(
        settings,
        user="bob",
        source="local-unverified",
        dataset="flights",
        level="masked",
        outcome="denied",
        purpose=forged,
        where="month = 3",
    )
    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_AUDIT_DIR", str(settings.path("audit_dir")))
    assert main(["data", "audit"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 1 and "\x1b" not in out  # one record, one line: nothing planted
    assert "\\n2026-01-01" in lines[0] and "\\x1b[2K" in lines[0]
    assert "where=month = 3" in lines[0] and "source=local-unverified" in lines[0]


def test_a_missing_audit_folder_is_an_error_that_says_where_it_looked(settings, monkeypatch, capsys):
    from workbench.cli import main

    missing = settings.path("audit_dir") / "nowhere"
    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_AUDIT_DIR", str(missing))
    assert main(["data", "audit"]) == AuditError.exit_code
    assert str(missing) in capsys.readouterr().err
    assert main(["data", "audit", "--verify"]) != 0


def test_a_day_file_swapped_between_two_writes_is_noticed(settings, tmp_path):
    record(settings, user="alice", dataset="flights", outcome="allowed")  # the writer keeps the file open
    path = day_file(settings, dt.datetime.now(dt.UTC))
    moved = tmp_path / "moved.jsonl"
    path.rename(moved)
    before = moved.read_bytes()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AuditError, match="symbolic link"):
        record(settings, user="alice", dataset="flights", outcome="allowed")
    assert moved.read_bytes() == before and not (tmp_path / "elsewhere").exists()
