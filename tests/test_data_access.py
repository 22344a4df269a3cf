"""workbench.data.load / sample / catalog / publish against real Spark and the sample lake: each level
returns the right columns and values, row filters apply, refusals say who, what and whom to ask."""

from __future__ import annotations

import hashlib
import hmac
import os
import pwd
import re
import warnings
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.governance_support import services
from workbench.data import access, catalog, load, publish, sample
from workbench.data.access import GovernanceWarning
from workbench.data.audit import query
from workbench.data.policy import REDACTED
from workbench.errors import AccessDenied, ConfigError, LakeError, PredicateRefused, UnknownDataset

# One flight, identified by public columns: UA 1545 on 2013-01-01 (tail N14228, time_hour 10:00 UTC).
ONE_FLIGHT = "month = 1 AND day = 1 AND carrier = 'UA' AND flight = 1545"


@pytest.fixture(scope="module")
def base(repo_settings, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    return repo_settings.with_overrides(
        audit_dir=str(tmp / "audit"),
        governed_dir=str(tmp / "governed"),
        user="alice",
        groups=("data-scientists",),
        mask_salt="salt-one",
    )


def as_(settings, *groups, **more):
    return settings.with_overrides(groups=groups, **more)


def first(df):
    rows = df.collect()
    assert len(rows) == 1
    return rows[0]


def test_full_and_masked_levels_keep_names_and_types(base, spark):
    full = load("flights", where=ONE_FLIGHT, settings=as_(base, "data-stewards"), spark=spark)
    masked = load("flights", where=ONE_FLIGHT, settings=base, spark=spark)
    assert masked.schema == full.schema  # same names, same types, same order
    f, m = first(full), first(masked)
    assert f.tailnum == "N14228" and str(f.time_hour) == "2013-01-01 10:00:00"
    assert m.tailnum == hashlib.sha256(b"salt-one" + b"N14228").hexdigest()  # a salted SHA-256, stable run to run
    assert str(m.time_hour) == "2013-01-01 00:00:00"  # year_only
    assert (m.origin, m.dest, m.arr_delay) == (f.origin, f.dest, f.arr_delay)  # other columns untouched


def test_hash_changes_with_the_salt_and_masked_tables_still_join(base, spark):
    one = first(load("flights", columns=["tailnum"], where=ONE_FLIGHT, settings=base, spark=spark)).tailnum
    two = first(
        load(
            "flights",
            columns=["tailnum"],
            where=ONE_FLIGHT,
            settings=base.with_overrides(mask_salt="salt-two"),
            spark=spark,
        )
    ).tailnum
    assert one != two and len(two) == 64
    flights = load("flights", columns=["tailnum"], where="month = 1 AND day = 1", settings=base, spark=spark)
    planes = load("planes", columns=["tailnum", "seats"], settings=base, spark=spark)
    steward = as_(base, "data-stewards")
    raw_join = load("flights", columns=["tailnum"], where="month = 1 AND day = 1", settings=steward, spark=spark).join(
        load("planes", columns=["tailnum", "seats"], settings=steward, spark=spark), "tailnum"
    )
    assert flights.join(planes, "tailnum").count() == raw_join.count() > 600  # pseudonyms join like the identifiers


def test_where_sees_masked_values_not_raw_ones(base, spark):
    # a masked reader cannot probe raw identifiers through the predicate
    assert load("flights", where=f"{ONE_FLIGHT} AND tailnum = 'N14228'", settings=base, spark=spark).count() == 0


def test_redact_null_drop_and_sql_masks(base, spark, tmp_path):
    doc = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
    doc["datasets"]["planes"]["columns"].update(
        {
            "manufacturer": {"type": "string", "classification": "sensitive", "mask": "redact"},
            "model": {"type": "string", "classification": "sensitive", "mask": "null"},
            "engine": {"type": "string", "classification": "pii", "mask": "drop"},
            "seats": {"type": "int", "classification": "sensitive", "mask": {"sql": "seats - seats % 100"}},
            "year": {"type": "int", "classification": "sensitive", "mask": "hash"},
        }
    )
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(doc))
    settings = base.with_overrides(catalog_path=str(tmp_path / "catalog.yaml"))
    full = load("planes", where="tailnum = 'N10156'", settings=as_(settings, "data-stewards"), spark=spark)
    masked = load("planes", settings=settings, spark=spark)
    assert "engine" not in masked.columns and "engine" in full.columns
    types = dict(masked.dtypes)
    assert types == {k: v for k, v in full.dtypes if k != "engine"}
    f = first(full)
    rows = masked.where(f"tailnum = '{hashlib.sha256(b'salt-one' + b'N10156').hexdigest()}'").collect()
    m = rows[0]
    assert m.manufacturer == REDACTED and m.model is None and m.seats == f.seats - f.seats % 100
    assert isinstance(m.year, int) and m.year != f.year
    with pytest.raises(
        AccessDenied, match=r"Column\(s\) engine of dataset 'planes' are not released at level 'masked'"
    ):
        load("planes", columns=["tailnum", "engine"], settings=settings, spark=spark)
    listing = {e.name: e for e in catalog(settings)}["planes"]
    assert {c.name: (c.mask, c.released) for c in listing.columns}["engine"] == ("drop", False)


def test_row_filter_applies_to_its_group(base, spark):
    jfk = load("flights", columns=["origin"], where="month = 2", settings=as_(base, "jfk-operations"), spark=spark)
    origins = {r.origin for r in jfk.distinct().collect()}
    assert origins == {"JFK"}
    all_feb = load("flights", columns=["origin"], where="month = 2", settings=as_(base, "data-stewards"), spark=spark)
    assert jfk.count() == all_feb.where("origin = 'JFK'").count() < all_feb.count()


def test_several_groups_read_through_the_highest_grant(base, spark):
    row = first(
        load(
            "flights",
            columns=["tailnum"],
            where=ONE_FLIGHT,
            settings=as_(base, "stakeholders", "jfk-operations", "data-stewards"),
            spark=spark,
        )
    )
    assert row.tailnum == "N14228"
    # masked without a filter beats masked with one
    both = load(
        "flights",
        columns=["origin"],
        where="month = 2",
        settings=as_(base, "jfk-operations", "data-scientists"),
        spark=spark,
    )
    assert both.where("origin <> 'JFK'").count() > 0


def test_no_grant_names_dataset_caller_groups_and_owner(base, spark):
    settings = as_(base, "stakeholders", "marketing")
    with pytest.raises(AccessDenied) as err:
        load("flights", settings=settings, spark=spark)
    message = str(err.value)
    for needle in ("'flights'", "'alice'", "stakeholders, marketing", "data-stewards", "local-unverified"):
        assert needle in message
    assert catalog(settings) == []
    assert query(settings, user="alice", dataset="flights", outcome="denied").records


def test_unknown_dataset_lists_close_names(base, spark):
    with pytest.raises(UnknownDataset, match=r"No dataset named 'flight'.*Did you mean 'flights'\?"):
        load("flight", settings=base, spark=spark)


def test_catalog_lists_level_row_filter_and_masks(base):
    entries = {e.name: e for e in catalog(as_(base, "jfk-operations"))}
    assert set(entries) == {"airlines", "airports", "flights", "planes", "weather"}
    flights = entries["flights"]
    assert (flights.level, flights.row_filter, flights.owner) == ("masked", "origin = 'JFK'", "data-stewards")
    assert {c.name: c.mask for c in flights.columns if c.mask} == {
        "tailnum": "hash",
        "time_hour": "year_only",
        # issue 14: to the minute, scheduled_departure gave time_hour away (a functional dependency)
        "scheduled_departure": "sql: date_trunc('DAY', scheduled_departure)",
        # issue 14: day + hour (or a timetable's minutes) together gave time_hour away: two-hour blocks
        "hour": "sql: div(hour, 2)",
        **{c: f"sql: div({c}, 200)" for c in ("dep_time", "sched_dep_time", "arr_time", "sched_arr_time")},
    }
    full = {e.name: e for e in catalog(as_(base, "data-stewards"))}["flights"]
    assert full.level == "full" and not any(c.mask for c in full.columns)


def test_sample_returns_governed_pandas(base, spark):
    frame = sample("planes", 50, settings=base, spark=spark)
    assert len(frame) == 50 and frame["tailnum"].str.fullmatch(r"[0-9a-f]{64}").all()


def test_local_profile_warns_once_that_the_boundary_is_advisory(base, spark, monkeypatch):
    monkeypatch.setattr(access, "_warned_advisory", False)
    with pytest.warns(GovernanceWarning, match="ADVISORY"):
        load("airlines", settings=base, spark=spark)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GovernanceWarning)
        load("airlines", settings=base, spark=spark)  # not a second time


def test_production_reads_published_views(base, spark, tmp_path):
    # In production the governance service says who is asking; here (one OS account) one service per group.
    key_file = tmp_path / "mask.key"  # the HMAC key of hash masks, owned by the service account (here: us)
    key_file.write_bytes(b"k" * 40 + b"\n")
    key_file.chmod(0o600)
    base = base.with_overrides(mask_key_file=str(key_file))
    with services(tmp_path) as start:
        _production_reads_published_views(base, spark, start)


def _production_reads_published_views(base, spark, start):
    prod = start(base.with_overrides(profile="production", mask_salt="prod-salt"), "data-scientists")
    with pytest.raises(
        LakeError, match=r"'masked' view of dataset 'planes' has not been published.*workbench data publish"
    ):
        load("planes", settings=prod, spark=spark)
    with pytest.raises(AccessDenied, match="needs unfiltered 'full' access"):
        publish(prod, spark, datasets=["planes"], permissions=False, progress=lambda m: None)
    steward = start(prod, "data-stewards")
    views = publish(steward, spark, datasets=["weather"], permissions=False, progress=lambda m: None)
    assert [(v.dataset, v.view) for v in views] == [("weather", "masked"), ("weather", "filtered-jfk-operations")]
    for _ in range(3):
        publish(steward, spark, datasets=["planes"], permissions=False, progress=lambda m: None)
    versions = sorted(p.name for p in (prod.path("governed_dir") / "planes" / "masked").iterdir())
    assert len(versions) == 2 and all(v.startswith("v") for v in versions)  # staged, renamed in, two kept
    masked = load("planes", settings=prod, spark=spark)
    pseudonym = hmac.new(b"k" * 40, b"N10156", hashlib.sha256).hexdigest()  # production: HMAC-SHA256 (issue 14)
    assert masked.count() == 3322 and masked.where(f"tailnum = '{pseudonym}'").count() == 1
    jfk = load("weather", columns=["origin"], settings=start(prod, "jfk-operations"), spark=spark)
    assert {r.origin for r in jfk.distinct().collect()} == {"JFK"}
    # a second service on the same lake with an audit log of its own (its record numbers start again): each read
    # still gets a folder of its own, and the first reader's folder is left alone
    fresh = start(prod.with_overrides(audit_dir=str(prod.path("audit_dir").parent / "audit-second")), "data-scientists")
    first_seq = int(Path(masked.inputFiles()[0].removeprefix("file:")).parent.name.split("-")[0])
    for _ in range(first_seq + 1):  # so one of these reads has the first read's record number
        again = load("planes", settings=fresh, spark=spark)
    assert again.count() == 3322
    assert not set(again.inputFiles()) & set(masked.inputFiles()) and masked.count() == 3322


def test_browser_widget_shows_levels_and_masks(base):
    from workbench.data.widgets import browser

    box = browser(base)
    picker, details = box.children[0].children[0], box.children[1]
    assert ("flights (masked)", "flights") in picker.options
    picker.value = "flights"
    assert "year_only" in details.value and "hash" in details.value and "masked" in details.value


def test_catalog_command_lists_what_the_caller_may_read(monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_USER", "jo")
    monkeypatch.setenv("WORKBENCH_GROUPS", "jfk-operations")
    assert main(["data", "catalog"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith("flights"))
    assert "masked" in line and "rows: origin = 'JFK'" in line and "tailnum=hash" in line
    monkeypatch.setenv("WORKBENCH_GROUPS", "stakeholders")
    assert main(["data", "catalog"]) == 0
    assert "no datasets" in capsys.readouterr().out


# ---- issue 14: predicates see only the governed view, tried as an attacker would ----------------
RAW_TAIL = re.compile(r"\bN[0-9][0-9A-Z]{1,5}\b")  # an FAA-shaped tail number


@pytest.fixture
def engine_dropped(base, tmp_path):
    """planes with `engine` dropped at the masked level and `speed` left out of the catalog."""
    doc = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
    cols = doc["datasets"]["planes"]["columns"]
    cols["engine"] = {"type": "string", "classification": "pii", "mask": "drop"}
    del cols["speed"]
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(doc))
    return base.with_overrides(catalog_path=str(tmp_path / "catalog.yaml"))


@pytest.mark.parametrize(
    "where,name",
    [
        ("engine = 'Turbo-fan'", "`engine`"),  # a drop-masked column
        ("governed.engine = 'Turbo-fan'", "`engine`"),  # qualified with the fence's own alias
        ("speed > 100", "`speed`"),  # a column the catalog does not describe
        ("raise_error(engine) IS NULL", "`engine`"),  # would print the raw value of a dropped column
    ],
)
def test_where_cannot_name_a_column_outside_the_view(engine_dropped, spark, where, name):
    with pytest.raises(PredicateRefused) as err:
        load("planes", where=where, settings=engine_dropped, spark=spark)
    message = str(err.value)
    assert name in message and "not a column of your view of dataset 'planes' at level 'masked'" in message
    assert "Turbo-fan" not in message.replace(where, "")  # names the column, never a value
    denied = query(engine_dropped, dataset="planes", outcome="denied").records
    assert denied and denied[-1]["reason"] == "PredicateRefused" and denied[-1]["where"] == where
    # the steward's view has both columns: the same predicate is fine there
    assert (
        load(
            "planes",
            where=where.replace("raise_error(engine)", "engine"),
            settings=as_(engine_dropped, "data-stewards"),
            spark=spark,
        ).count()
        >= 0
    )


def test_the_returned_dataframe_is_fenced_too(engine_dropped, spark):
    from pyspark.errors import AnalysisException

    masked = load("planes", settings=engine_dropped, spark=spark)
    for attempt in (
        lambda: masked.where("engine = 'Turbo-fan'"),
        lambda: masked.orderBy("engine"),
        lambda: masked.select("speed"),
    ):
        with pytest.raises(AnalysisException, match="UNRESOLVED_COLUMN"):
            attempt().schema
    narrowed = load("planes", columns=["tailnum", "seats"], settings=engine_dropped, spark=spark)
    with pytest.raises(AnalysisException, match="UNRESOLVED_COLUMN"):
        narrowed.where("engine = 'Turbo-fan'").schema


def test_raise_error_in_a_predicate_shows_masked_values_only(base, spark):
    from pyspark.errors import PySparkException

    df = load("planes", where="raise_error(tailnum) IS NULL", settings=base, spark=spark)
    with pytest.raises(PySparkException) as err:
        df.collect()
    text = str(err.value)
    assert re.search(r"\b[0-9a-f]{64}\b", text) and not RAW_TAIL.search(text)  # a pseudonym, never the tail number
    # a row-filtered reader cannot use raise_error to look at rows the filter removes
    probe = "CASE WHEN origin <> 'JFK' THEN raise_error(concat(origin, tailnum)) ELSE true END"
    jfk = load(
        "flights", columns=["origin"], where=f"month = 2 AND {probe}", settings=as_(base, "jfk-operations"), spark=spark
    )
    assert {r.origin for r in jfk.distinct().collect()} == {"JFK"}


def test_where_cannot_read_files_or_call_the_jvm(base, spark):
    raw = f"{base.lake}/raw/planes".removeprefix("file://")
    subquery = f"tailnum IN (SELECT tailnum FROM parquet.`{raw}`)"
    spark.conf.set("spark.sql.runSQLOnFiles", "true")  # even a session someone turned it back on in
    with pytest.raises(PredicateRefused, match=r"reads another table or a file.*SQL over file paths is off"):
        load("planes", where=subquery, settings=base, spark=spark)
    assert spark.conf.get("spark.sql.runSQLOnFiles") == "false"
    for call in ("reflect('java.lang.System', 'getenv', 'HOME') IS NOT NULL", "`java_method` /* x */ ('a', 'b') = ''"):
        with pytest.raises(PredicateRefused, match="reflect/java_method"):
            load("planes", where=call, settings=base, spark=spark)


def test_production_refuses_a_shared_cluster(base, tmp_path):
    from workbench.spark import get_spark

    with services(tmp_path) as start:
        for master in ("spark://127.0.0.1:7077", "sc://127.0.0.1:15002", "yarn"):
            prod = start(base.with_overrides(profile="production", spark_master=master), "data-scientists")
            with pytest.raises(
                ConfigError,
                match=r"refuses a (shared Spark master|Spark Connect server).*spark_cluster_enforces_access",
            ):
                get_spark(settings=prod)
            with pytest.raises(ConfigError, match="can read every raw file"):
                load("planes", settings=prod)  # refused before any session is made, and audited
            assert query(prod, dataset="planes", outcome="error").records[-1]["reason"] == "ConfigError"
    # the local profile may use a cluster (advisory anyway), and production may when the cluster enforces access
    from workbench.spark import _refuse_shared

    _refuse_shared(base.with_overrides(spark_master="spark://127.0.0.1:7077"), "spark://127.0.0.1:7077")
    _refuse_shared(
        base.with_overrides(profile="production", spark_cluster_enforces_access=True), "sc://127.0.0.1:15002"
    )


# ---- issue 14: hash masks are HMAC-SHA256 with a key only the service reads ----------------------
def _key_file(tmp_path, content: bytes = b"0123456789abcdef0123456789abcdef", mode: int = 0o600):
    path = tmp_path / "mask.key"
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("length", [32, 64, 100])  # RFC 2104: keys longer than a block are hashed first
def test_hmac_key_file_gives_hmac_pseudonyms(base, spark, tmp_path, length):
    key = _key_file(tmp_path, bytes(range(65, 65 + 26)) * 4)
    key.write_bytes(key.read_bytes()[:length])
    secret = key.read_bytes()
    settings = base.with_overrides(mask_key_file=str(key))
    row = first(load("flights", columns=["tailnum"], where=ONE_FLIGHT, settings=settings, spark=spark))
    assert row.tailnum == hmac.new(secret, b"N14228", hashlib.sha256).hexdigest()
    # integers: 60 bits of the same MAC, folded into the column's range
    doc = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
    doc["datasets"]["planes"]["columns"]["year"] = {"type": "int", "classification": "sensitive", "mask": "hash"}
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(doc))
    planes = settings.with_overrides(catalog_path=str(tmp_path / "catalog.yaml"))
    pseudonym = hmac.new(secret, b"N10156", hashlib.sha256).hexdigest()
    year = first(load("planes", where=f"tailnum = '{pseudonym}'", settings=planes, spark=spark)).year
    assert year == int(hmac.new(secret, b"2004", hashlib.sha256).hexdigest()[:15], 16) % (2**31 - 1)


@pytest.mark.parametrize(
    "content,mode,needle",
    [
        (b"0123456789abcdef0123456789abcdef", 0o644, "mode 0644, so other accounts can read"),
        (b"0123456789abcdef0123456789abcdef", 0o640, "mode 0640"),
        (b"short", 0o600, "has 5 bytes; use at least 32"),
        (b"workbench-dev-salt-change-me\n", 0o600, "holds the development salt"),
    ],
)
def test_a_weak_or_exposed_key_is_refused(base, tmp_path, content, mode, needle):
    from workbench.data.keys import hash_key

    with pytest.raises(ConfigError, match=needle):
        hash_key(base.with_overrides(mask_key_file=str(_key_file(tmp_path, content, mode))))


def test_production_needs_a_key_file_and_refuses_links(base, spark, tmp_path):
    from workbench.data.keys import hash_key

    steward = as_(base, "data-stewards").with_overrides(profile="production", mask_salt="not-the-default")
    with pytest.raises(ConfigError, match="'mask_key_file' is empty in the production profile"):
        publish(steward, spark, datasets=["planes"], permissions=False, progress=lambda m: None)
    target = _key_file(tmp_path)
    (tmp_path / "link.key").symlink_to(target)
    with pytest.raises(ConfigError, match="not a link"):
        hash_key(steward.with_overrides(mask_key_file=str(tmp_path / "link.key")))
    with pytest.raises(ConfigError, match="does not exist"):
        hash_key(steward.with_overrides(mask_key_file=str(tmp_path / "missing.key")))
    # production: the service account must own it (whoever owns it can read it)
    me = pwd.getpwuid(os.geteuid()).pw_name
    other = next(u.pw_name for u in pwd.getpwall() if u.pw_uid != os.geteuid())
    assert hash_key(steward.with_overrides(mask_key_file=str(target), service_user=me)).hmac
    with pytest.raises(ConfigError, match=rf"owned by uid {os.geteuid()}, not by the data service account '{other}'"):
        hash_key(steward.with_overrides(mask_key_file=str(target), service_user=other))


def test_a_dictionary_attack_on_published_pseudonyms_finds_nothing(base, spark, tmp_path):
    """The attack from issue 14: hash every likely tail number with the public development salt and look the
    pseudonyms up. It reverses the development hash; against production's HMAC it finds nothing."""
    from pyspark.sql import functions as F

    from workbench.data.keys import DEFAULT_SALT

    # the attacker's dictionary: every real tail number (a stronger one than FAA-shaped guesses)
    guesses = spark.read.parquet(f"{base.lake}/raw/planes").select("tailnum").distinct()
    dictionary = guesses.select(F.sha2(F.concat(F.lit(DEFAULT_SALT), "tailnum"), 256).alias("tailnum"))
    dev = load("planes", columns=["tailnum"], settings=base.with_overrides(mask_salt=DEFAULT_SALT), spark=spark)
    assert dev.join(dictionary, "tailnum").count() == 3322  # the development hash is reversed, every row

    key = _key_file(tmp_path, os.urandom(24).hex().encode())
    steward = as_(base, "data-stewards").with_overrides(
        profile="production",
        mask_key_file=str(key),
        governed_dir=str(tmp_path / "governed"),
        service_user=pwd.getpwuid(os.geteuid()).pw_name,
    )
    with services(tmp_path) as start:  # production decides through the governance service
        publish(start(steward, "data-stewards"), spark, datasets=["planes"], permissions=False, progress=lambda m: None)
        published = load("planes", columns=["tailnum"], settings=start(steward, "data-scientists"), spark=spark)
        assert published.count() == 3322 and published.join(dictionary, "tailnum").count() == 0
