"""The read audit: every load, allowed or denied, leaves a complete record; concurrent writers never
interleave or lose records; reads fail closed when they cannot be recorded; the CLI queries it."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys

import pytest

from tests.conftest import REPO
from workbench.data import load
from workbench.data.audit import FIELDS, day_file, parse_since, query, record
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
    assert stat.S_IMODE(path.stat().st_mode) == 0o622  # others may append, only the owner reads


def test_a_read_that_cannot_be_recorded_is_refused(settings, spark, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(AuditError, match="could not be recorded"):
        load("airlines", settings=settings.with_overrides(audit_dir=str(blocker / "audit")), spark=spark)


WRITER = """
import sys
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
