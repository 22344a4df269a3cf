import pytest
import yaml

from workbench.config import load_settings
from workbench.lake import SAMPLE_TABLES, init_lake


@pytest.fixture(scope="module")
def fresh_lake(tmp_path_factory, spark):
    home = tmp_path_factory.mktemp("lakehome")
    settings = load_settings(env={"WORKBENCH_HOME": str(home)})
    messages: list[str] = []
    counts = init_lake(settings, progress=messages.append, spark=spark)
    return settings, counts, messages


def test_init_writes_all_tables_with_real_row_counts(fresh_lake):
    settings, counts, _ = fresh_lake
    assert counts == {"flights": 336776, "weather": 26115, "planes": 3322, "airports": 1458, "airlines": 16}


def test_flights_schema_is_typed_and_partitioned(fresh_lake, spark):
    settings, _, _ = fresh_lake
    df = spark.read.parquet(f"{settings.lake}/raw/flights")
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert types["scheduled_departure"] == "timestamp" and types["time_hour"] == "timestamp"
    assert types["arr_delay"] == "int" and types["dep_time"] == "int" and types["carrier"] == "string"
    assert types["month"] == "int"
    months = sorted(
        p.name for p in (settings.path("lake_root") / "raw" / "flights").iterdir() if p.name.startswith("month=")
    )
    assert len(months) == 12
    # nullable ints stay ints: cancelled flights have a null arr_delay, not NaN
    assert df.where("arr_delay IS NULL").count() == 9430
    # scheduled departure is the UTC instant of the NY local time: 2013-01-01 05:15 EST = 10:15 UTC
    first = df.where("month = 1 AND day = 1 AND flight = 1545 AND carrier = 'UA'").first()
    assert str(first.scheduled_departure) == "2013-01-01 10:15:00"


def test_second_run_does_nothing(fresh_lake, spark):
    settings, counts, _ = fresh_lake
    flights = settings.path("lake_root") / "raw" / "flights"
    before = flights.stat().st_mtime_ns
    messages: list[str] = []
    assert init_lake(settings, progress=messages.append, spark=spark) == counts
    assert flights.stat().st_mtime_ns == before
    assert all("skipped" in m for m in messages)


def test_force_replaces_atomically(fresh_lake, spark):
    settings, counts, _ = fresh_lake
    init_lake(settings, force=True, progress=lambda m: None, spark=spark)
    raw = settings.path("lake_root") / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(t.name for t in SAMPLE_TABLES)  # no staging leftovers
    assert spark.read.parquet(f"{settings.lake}/raw/flights").count() == counts["flights"]


def test_first_catalog_describes_every_dataset(fresh_lake):
    settings, _, _ = fresh_lake
    catalog = yaml.safe_load(settings.path("catalog_path").read_text())
    assert set(catalog["datasets"]) == {t.name for t in SAMPLE_TABLES}
    flights = catalog["datasets"]["flights"]
    assert flights["uri"] == "{lake}/raw/flights" and flights["format"] == "parquet"
    assert flights["partitioning"] == ["month"] and flights["owner"] and flights["description"]
    assert flights["columns"]["scheduled_departure"]["type"] == "timestamp"
    assert catalog["default_dataset"] == "flights" and flights["roles"]["windows"]["train"] == "month < 3"


def test_the_first_catalog_is_written_by_the_sample_not_the_catalog_module(fresh_lake):
    import ast
    import sys
    from pathlib import Path

    from workbench.data.catalog import load_catalog

    catalog_module = sys.modules["workbench.data.catalog"]  # `workbench.data.catalog` the attribute is a function

    tree = ast.parse(Path(catalog_module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.endswith("lake") for m in imported)  # issue 13: no cycle catalog <-> lake
    assert not hasattr(catalog_module, "write_initial_catalog")
    settings, _, _ = fresh_lake
    cat = load_catalog(settings)  # the first catalog passes the strict loader
    assert cat.grants == {"data-stewards": "full", "data-scientists": "masked"}


def test_status_counts_what_the_caller_may_read_through_the_governed_loader(spark, repo_settings, tmp_path):
    from workbench.data.audit import query
    from workbench.lake import lake_status

    base = repo_settings.with_overrides(audit_dir=str(tmp_path / "audit"), user="jo")
    jfk = {s.name: s for s in lake_status(base.with_overrides(groups=("jfk-operations",)), spark)}
    flights = spark.read.parquet(f"{repo_settings.lake}/raw/flights")
    assert jfk["flights"].level == "masked" and jfk["flights"].rows == flights.where("origin = 'JFK'").count()
    assert jfk["airlines"].rows == 16
    none = lake_status(base.with_overrides(groups=("stakeholders",)), spark)
    assert {(s.level, s.rows, s.note) for s in none} == {("none", None, "no access")}
    records = query(base, user="jo").records
    assert {r["purpose"] for r in records} == {"lake status"} and len(records) == 5  # every count is an audited read


def test_status_command_prints_level_and_rows(spark, monkeypatch, capsys, tmp_path):
    from tests.conftest import REPO
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_AUDIT_DIR", str(tmp_path / "audit"))
    monkeypatch.setenv("WORKBENCH_GROUPS", "jfk-operations")
    assert main(["lake", "status"]) == 0
    lines = {l.split()[0]: l.split() for l in capsys.readouterr().out.splitlines()[1:]}
    assert lines["airlines"][1:3] == ["masked", "16"] and lines["flights"][1] == "masked"
    assert int(lines["flights"][2].replace(",", "")) < 336776  # JFK rows only: counted through the governed loader


def test_first_catalog_declares_the_sample_task_as_the_committed_one_does(fresh_lake, repo_settings):
    """The sample's roles live in its catalogs, not in the library: `lake init` writes the committed ones."""
    from workbench.data.catalog import load_catalog

    settings, _, _ = fresh_lake
    written, committed = load_catalog(settings).get("flights"), load_catalog(repo_settings).get("flights")
    assert written.roles.declared and written.roles == committed.roles
    assert written.roles.target.column == "arr_delay" and written.roles.target.label_threshold == 15
