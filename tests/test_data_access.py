"""workbench.data.load / sample / catalog / publish against real Spark and the sample lake: each level
returns the right columns and values, row filters apply, refusals say who, what and whom to ask."""

from __future__ import annotations

import hashlib
import warnings

import pytest
import yaml

from tests.conftest import REPO
from tests.governance_support import services
from workbench.data import access, catalog, load, publish, sample
from workbench.data.access import GovernanceWarning
from workbench.data.audit import query
from workbench.data.policy import REDACTED
from workbench.errors import AccessDenied, LakeError, UnknownDataset

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
    assert {c.name: c.mask for c in flights.columns if c.mask} == {"tailnum": "hash", "time_hour": "year_only"}
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
    pseudonym = hashlib.sha256(b"prod-salt" + b"N10156").hexdigest()
    assert masked.count() == 3322 and masked.where(f"tailnum = '{pseudonym}'").count() == 1
    jfk = load("weather", columns=["origin"], settings=start(prod, "jfk-operations"), spark=spark)
    assert {r.origin for r in jfk.distinct().collect()} == {"JFK"}


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
