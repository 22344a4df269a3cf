"""The catalog format: the committed catalog is valid and says what the sample lake needs; typos fail
on load with a message naming the file, the dataset and the field; columns are checked against the data."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import REPO
from workbench.data.catalog import SPARK_TYPES, load_catalog, parse_catalog, valid_spark_type
from workbench.errors import CatalogError, CatalogInvalid

COMMITTED = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())


def broken(edit) -> dict:
    doc = copy.deepcopy(COMMITTED)
    edit(doc)
    return doc


def test_committed_catalog_classifies_the_sample_lake(repo_settings):
    cat = load_catalog(repo_settings)
    flights = cat.get("flights")
    tailnum, time_hour = flights.column("tailnum"), flights.column("time_hour")
    assert (tailnum.classification, str(tailnum.mask)) == ("pii", "hash")
    assert (time_hour.classification, str(time_hour.mask)) == ("sensitive", "year_only")
    assert str(cat.get("planes").column("tailnum").mask) == "hash"  # so masked flights still join masked planes
    assert cat.grants["data-scientists"] == "masked" and cat.grants["data-stewards"] == "full"
    assert cat.grants["stakeholders"] == "none"
    assert flights.zone == "raw" and flights.owner == "data-stewards"
    assert flights.uri == f"{repo_settings.lake}/raw/flights"


def _set(path: list, value):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _delete(path: list):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


@pytest.mark.parametrize(
    "edit,needles",
    [
        (
            _set(["datasets", "flights", "columns", "tailnum", "mask"], "hahs"),
            ["dataset 'flights', column 'tailnum', field 'mask'", "unknown mask 'hahs'", "Did you mean 'hash'"],
        ),
        (
            _set(["grants", "data-scientists"], "maskd"),
            ["top-level 'grants'", "group 'data-scientists'", "undefined level 'maskd'", "none, masked, full"],
        ),
        (
            _set(["datasets", "weather", "grants"], {"data-scientists": "read"}),
            ["dataset 'weather', field 'grants'", "undefined level 'read'"],
        ),
        (
            _set(["datasets", "flights", "columns", "origin", "classification"], "secret"),
            ["column 'origin', field 'classification'", "public, internal, sensitive, pii", "'secret'"],
        ),
        (
            _delete(["datasets", "flights", "columns", "tailnum", "mask"]),
            ["column 'tailnum' is classified 'pii' but has no 'mask'"],
        ),
        (
            _set(["datasets", "flights", "columns", "origin", "mask"], "hash"),
            ["column 'origin' has a mask but is classified 'internal'"],
        ),
        (
            _set(["datasets", "flights", "columns", "tailnum", "mask"], "year_only"),
            ["column 'tailnum', field 'mask'", "'year_only' applies to columns of type date, timestamp", "'string'"],
        ),
        (
            _set(["datasets", "flights", "onwer"], "x"),
            ["dataset 'flights' has an unknown field 'onwer'", "Did you mean 'owner'"],
        ),
        (
            _set(["datasets", "flights", "row_filters"], {"marketing": "origin = 'JFK'"}),
            ["dataset 'flights', field 'row_filters'", "group 'marketing' has a row filter but no grant"],
        ),
        (
            _set(["datasets", "flights", "row_filters"], {"stakeholders": "origin = 'JFK'"}),
            ["group 'stakeholders' has a row filter but no grant"],
        ),
        (_delete(["datasets", "planes", "uri"]), ["dataset 'planes' has no 'uri'"]),
        (
            _set(["datasets", "planes", "zone"], "bronze"),
            ["dataset 'planes', field 'zone'", "raw, curated", "'bronze'"],
        ),
        (
            _set(
                ["datasets", "planes", "columns", "seats"],
                {"type": "int", "classification": "sensitive", "mask": {"sqll": "0"}},
            ),
            ["column 'seats', field 'mask'", "{sql: <Spark SQL expression>}"],
        ),
        (_set(["grnats"], {}), ["the catalog has an unknown field 'grnats'", "Did you mean 'grants'"]),
        (
            _set(["default_dataset"], "flihgts"),
            ["top-level 'default_dataset' names 'flihgts'", "Did you mean 'flights'", "Known datasets: airlines"],
        ),
        (_set(["default_dataset"], ["flights"]), ["top-level 'default_dataset' must be the name of a dataset"]),
        (
            _set(["datasets", "flights", "roles", "windows"], {"trian": "month < 3", "current": " "}),
            [
                "dataset 'flights', field 'roles'",
                "unknown window 'trian' (did you mean 'train'?)",
                "'windows.current' must be a non-empty Spark SQL predicate",
            ],
        ),
        (_set(["datasets", "flights", "roles", "windows"], "month < 3"), ["'windows' must map window names"]),
    ],
)
def test_typos_fail_with_file_dataset_and_field(tmp_path, edit, needles):
    path = tmp_path / "catalog.yaml"
    with pytest.raises(CatalogError) as err:
        parse_catalog(broken(edit), path, "file:///lake")
    message = str(err.value)
    assert message.startswith(f"{path}:")
    for needle in needles:
        assert needle in message, message


def test_valid_masks_of_every_kind_are_accepted(tmp_path):
    doc = broken(
        _set(
            ["datasets", "planes", "columns"],
            {
                "tailnum": {"type": "string", "classification": "pii", "mask": "redact"},
                "year": {"type": "int", "classification": "sensitive", "mask": "hash"},
                "model": {"type": "string", "classification": "sensitive", "mask": "null"},
                "engine": {"type": "string", "classification": "pii", "mask": "drop"},
                "seats": {"type": "int", "classification": "sensitive", "mask": {"sql": "seats - seats % 100"}},
            },
        )
    )
    planes = parse_catalog(doc, tmp_path / "c.yaml", "file:///lake").get("planes")
    assert [str(c.mask) for c in planes.columns] == ["redact", "hash", "null", "drop", "sql: seats - seats % 100"]


# ---- against the data (real Spark, the sample lake) --------------------------------------------
def write(tmp_path, doc) -> str:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


@pytest.fixture
def steward(repo_settings, tmp_path):
    return repo_settings.with_overrides(
        audit_dir=str(tmp_path / "audit"),
        governed_dir=str(tmp_path / "governed"),
        user="sam",
        groups=("data-stewards",),
    )


def test_a_column_not_in_the_data_fails_with_its_name(steward, spark, tmp_path):
    from workbench.data import load

    def rename(doc):
        cols = doc["datasets"]["planes"]["columns"]
        cols["tail_number"] = cols.pop("tailnum")

    settings = steward.with_overrides(catalog_path=write(tmp_path, broken(rename)))
    with pytest.raises(CatalogError) as err:
        load("planes", settings=settings, spark=spark)
    message = str(err.value)
    assert "dataset 'planes', column 'tail_number': not in the data" in message and "catalog.yaml" in message
    assert "tailnum" in message  # lists the columns the data does have


def test_a_wrong_type_names_both_types(steward, spark, tmp_path):
    from workbench.data import load

    settings = steward.with_overrides(
        catalog_path=write(tmp_path, broken(_set(["datasets", "planes", "columns", "seats", "type"], "string")))
    )
    with pytest.raises(
        CatalogError, match=r"column 'seats', field 'type': the catalog says 'string', the data has 'int'"
    ):
        load("planes", settings=settings, spark=spark)


def test_invalid_row_filter_and_sql_mask_name_their_field(steward, spark, tmp_path):
    from workbench.data import load

    doc = broken(_set(["datasets", "planes", "row_filters"], {"data-scientists": "seatz > 100"}))
    settings = steward.with_overrides(catalog_path=write(tmp_path, doc), groups=("data-scientists",))
    with pytest.raises(CatalogError, match=r"dataset 'planes', field 'row_filters', group 'data-scientists'"):
        load("planes", settings=settings, spark=spark)
    doc = broken(
        _set(
            ["datasets", "planes", "columns", "seats"],
            {"type": "int", "classification": "sensitive", "mask": {"sql": "no_such(seats)"}},
        )
    )
    settings = settings.with_overrides(catalog_path=write(tmp_path, doc))
    with pytest.raises(CatalogError, match=r"dataset 'planes', column 'seats', field 'mask'"):
        load("planes", settings=settings, spark=spark)


# ---- issue 14: a strict catalog ------------------------------------------------------------------
COMMITTED_TEXT = (REPO / "hub_config" / "catalog.yaml").read_text()


def _with_inserted(text: str, after: str, lines: str) -> str:
    """The catalog text with `lines` inserted after the first line equal to `after` (YAML keeps the last key)."""
    out = text.splitlines(keepends=True)
    i = next(n for n, line in enumerate(out) if line.rstrip("\n") == after)
    return "".join(out[: i + 1]) + lines + "".join(out[i + 1 :])


def _line_of(text: str, line: str, start: int = 0) -> int:
    return text.splitlines().index(line, start) + 1


def test_a_duplicate_column_cannot_remove_a_mask(steward, spark, tmp_path):
    from workbench.data import load

    # the attack: a second `tailnum:` at the end of flights' columns, without the mask
    text = COMMITTED_TEXT.replace("  weather:\n", "      tailnum:\n        type: string\n  weather:\n", 1)
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    assert yaml.safe_load(text)["datasets"]["flights"]["columns"]["tailnum"] == {
        "type": "string"
    }  # plain YAML: mask gone
    first = _line_of(text, "      tailnum:")
    second = _line_of(text, "      tailnum:", first)
    with pytest.raises(CatalogInvalid, match=rf"key 'tailnum' appears twice, at lines {first} and {second}"):
        load_catalog(steward.with_overrides(catalog_path=str(path)))
    with pytest.raises(CatalogInvalid):  # so no read goes through the unmasked column
        load(
            "flights", settings=steward.with_overrides(catalog_path=str(path), groups=("data-scientists",)), spark=spark
        )


def test_a_duplicate_grant_cannot_raise_a_level(steward, tmp_path):
    text = _with_inserted(COMMITTED_TEXT, "  jfk-operations: masked", "  jfk-operations: full\n")
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    assert yaml.safe_load(text)["grants"]["jfk-operations"] == "full"  # what YAML alone would grant
    line = _line_of(text, "  jfk-operations: masked")
    with pytest.raises(CatalogInvalid, match=rf"key 'jfk-operations' appears twice, at lines {line} and {line + 1}"):
        load_catalog(steward.with_overrides(catalog_path=str(path)))


def test_every_problem_is_reported_at_once(tmp_path):
    def many(doc):
        doc["datasets"]["flights"]["columns"]["tailnum"]["mask"] = "hahs"
        doc["grants"]["data-scientists"] = "maskd"
        doc["datasets"]["planes"]["zone"] = "bronze"
        doc["datasets"]["airlines"]["columns"]["name"]["type"] = "integer"

    with pytest.raises(CatalogInvalid) as err:
        parse_catalog(broken(many), tmp_path / "catalog.yaml", "file:///lake")
    assert len(err.value.problems) == 4
    assert all(p.startswith(f"{tmp_path / 'catalog.yaml'}:") for p in err.value.problems)
    message = str(err.value)
    for needle in ("unknown mask 'hahs'", "undefined level 'maskd'", "'bronze'", "'integer' is not a Spark type name"):
        assert needle in message
    assert "Did you mean 'int'" in message


@pytest.mark.parametrize(
    "name",
    [
        "string",
        "int",
        "decimal(10,2)",
        "array<string>",
        "map<string,int>",
        "struct<a:int,b:array<double>>",
        "timestamp_ntz",
    ],
)
def test_spark_type_names_are_accepted(name):
    assert valid_spark_type(name)


@pytest.mark.parametrize("name", ["integer", "varchar", "array<strin>", "map<string>", "struct<a>", "decimal(10)", ""])
def test_other_type_names_are_refused(name):
    assert not valid_spark_type(name)


@pytest.mark.parametrize("sql", ["tailnum", "`tailnum`", " ( tailnum ) "])
def test_an_sql_mask_that_is_the_column_itself_is_refused(tmp_path, sql):
    doc = broken(_set(["datasets", "flights", "columns", "tailnum", "mask"], {"sql": sql}))
    with pytest.raises(CatalogInvalid, match="the sql mask is the column itself, so it releases the raw value"):
        parse_catalog(doc, tmp_path / "c.yaml", "file:///lake")


def test_the_docs_list_every_accepted_type():
    page = (REPO / "docs" / "how-to" / "catalog-rules.md").read_text()
    assert all(f"`{name}`" in page for name in SPARK_TYPES)


# ---- issue 14: `workbench data check` against the data -------------------------------------------
def _only(doc, *names):
    doc["datasets"] = {n: doc["datasets"][n] for n in names}
    if doc.get("default_dataset") not in names:
        doc.pop("default_dataset", None)


def test_the_sample_catalog_names_its_default_dataset_and_windows(repo_settings):
    from workbench import task

    cat = load_catalog(repo_settings)
    assert cat.default_dataset == "flights"
    assert task.resolve_dataset("", repo_settings) == "flights" and task.resolve_dataset("weather") == "weather"
    assert task.window("", "train", "", repo_settings) == "month < 3"
    assert task.window("flights", "train", "month = 1", repo_settings) == "month = 1"  # a parameter wins
    assert task.default_model_name("", repo_settings.with_overrides(model_name="")) == "flights-late"
    from workbench.lake import FLIGHTS_ROLES, SAMPLE_DEFAULT_DATASET

    # the catalog `lake init` writes says the same as the committed one
    assert FLIGHTS_ROLES["windows"] == COMMITTED["datasets"]["flights"]["roles"]["windows"]
    assert COMMITTED["default_dataset"] == SAMPLE_DEFAULT_DATASET


def test_without_a_default_dataset_or_a_window_the_error_names_parameter_and_field(repo_settings, tmp_path):
    from workbench import task
    from workbench.errors import DriftError, TrainingError

    doc = broken(_delete(["default_dataset"]))
    settings = repo_settings.with_overrides(catalog_path=write(tmp_path, doc), model_name="")
    with pytest.raises(TrainingError, match=r"Parameter 'dataset' is not set.*no 'default_dataset'.*top-level"):
        task.resolve_dataset("", settings)
    with pytest.raises(TrainingError, match="Parameter 'dataset'"):
        task.resolve_task("", settings=settings)
    assert task.window("weather", "train", "", settings) == ""  # no role: all rows (time holdout)
    assert task.window("weather", "explain", None, settings) == ""
    for role, parameter in (("reference", "reference_where"), ("current", "current_where")):
        with pytest.raises(DriftError) as err:
            task.window("weather", role, "", settings)
        assert f"Parameter '{parameter}'" in str(err.value) and f"'roles: windows.{role}'" in str(err.value)
        assert "datasets.weather.roles" in str(err.value)


def test_a_window_role_is_fenced_like_any_where_and_checked_against_the_data(steward, spark, tmp_path):
    """A window declared in the catalog is a `where=` like any other: it cannot read a column the
    reader's level withholds, and `data check` compiles it against the data."""
    from workbench import drift
    from workbench.data.checks import check_catalog
    from workbench.errors import PredicateRefused

    def edit(doc):
        _only(doc, "planes")
        doc["datasets"]["planes"]["columns"]["engine"] = {"type": "string", "classification": "pii", "mask": "drop"}
        doc["datasets"]["planes"]["roles"] = {"windows": {"reference": "engine = 'Turbo-fan'", "current": "seats > 9"}}

    path = write(tmp_path, broken(edit))
    reader = steward.with_overrides(catalog_path=path, groups=("data-scientists",))
    with pytest.raises(PredicateRefused, match="engine"):
        drift.load_windows("planes", "", "", features=["seats"], settings=reader, spark=spark)
    windows = drift.load_windows(
        "planes", "", "", features=["seats"], settings=steward.with_overrides(catalog_path=path), spark=spark
    )  # a steward sees engine: the same windows run
    assert windows.reference.count() > 0 and windows.current.count() > windows.reference.count()
    windows.release()

    def typo(doc):
        edit(doc)
        doc["datasets"]["planes"]["roles"]["windows"]["current"] = "seatz > 9"

    report = check_catalog(steward.with_overrides(catalog_path=write(tmp_path, broken(typo))), spark)
    assert any("dataset 'planes', field 'roles', window 'current'" in f.message for f in report.errors), report.errors


def test_data_check_refuses_masks_that_change_nothing_and_reports_all(steward, spark, tmp_path):
    from workbench.data.checks import check_catalog

    def edit(doc):
        _only(doc, "planes", "airlines")
        cols = doc["datasets"]["planes"]["columns"]
        cols["tailnum"]["mask"] = {"sql": "concat(tailnum, '')"}  # looks like a mask, returns the raw value
        cols["seats"] = {"type": "int", "classification": "sensitive", "mask": {"sql": "seats + 0"}}
        cols["model"] = {"type": "string", "classification": "sensitive", "mask": {"sql": "lower(model)"}}
        doc["datasets"]["airlines"]["columns"]["carrier"]["type"] = "bigint"  # another dataset's mistake

    report = check_catalog(steward.with_overrides(catalog_path=write(tmp_path, broken(edit))), spark)
    errors = [f.message for f in report.errors]
    assert len(errors) == 3, errors
    assert any("column 'tailnum', field 'mask'" in e and "returns the raw value on all" in e for e in errors)
    assert any("column 'seats', field 'mask'" in e and "masks nothing" in e for e in errors)
    assert any("dataset 'airlines', column 'carrier', field 'type'" in e for e in errors)
    assert not any("'model'" in e for e in errors)  # lower() changes the (upper-case) model names
    assert not report.ok
    # ... but lower() maps each model to one value: invertible by whoever guesses it, which is worth a warning
    assert any("column 'model'" in w.message and "one-to-one on the sample" in w.message for w in report.warnings)


def test_data_check_finds_the_leak_in_the_old_catalog_and_passes_the_shipped_one(steward, spark, tmp_path):
    from workbench.data.checks import check_catalog

    def old(doc):  # the catalog before issue 14: time_hour masked, its minute-precise source and weather's copy not
        _only(doc, "flights", "weather")
        doc["datasets"]["flights"]["columns"]["scheduled_departure"] = {"type": "timestamp"}
        doc["datasets"]["weather"]["columns"]["time_hour"] = {"type": "timestamp"}

    old_catalog = steward.with_overrides(  # single columns are enough to show these leaks (and far cheaper)
        catalog_path=write(tmp_path, broken(old)), catalog_check_dependency_columns=1
    )
    report = check_catalog(old_catalog, spark, sample_rows=100_000)
    warnings = [f.message for f in report.warnings]
    assert report.ok, report.errors
    assert any(
        "unmasked column 'scheduled_departure' determines the raw value of the masked column 'time_hour'" in w
        for w in warnings
    ), warnings
    assert any("column 'time_hour' is masked (year_only) but dataset 'weather' releases" in w for w in warnings)

    shipped = check_catalog(steward, spark)
    assert shipped.ok and shipped.findings == [], shipped.findings
    assert shipped.bounded == {}  # the whole search, to four columns of every dataset
    assert shipped.datasets == ["airlines", "airports", "flights", "planes", "weather"]


def test_data_check_names_public_columns_that_together_give_a_masked_one_away(steward, spark, tmp_path):
    from workbench.data.checks import check_catalog

    def parts_public(doc):  # the catalog before the parts were coarsened: each of day and hour is harmless alone
        _only(doc, "flights")
        for name in ("hour", "dep_time", "sched_dep_time", "arr_time", "sched_arr_time"):
            doc["datasets"]["flights"]["columns"][name] = {"type": "int"}

    report = check_catalog(
        steward.with_overrides(catalog_path=write(tmp_path, broken(parts_public))), spark, sample_rows=50_000
    )
    warnings = [f.message for f in report.warnings]
    assert report.ok, report.errors
    # the sample holds January only, so month is constant and day + hour are the whole timestamp
    assert any(
        "the released columns 'day', 'hour' together determine the raw value of the masked column 'time_hour'" in w
        for w in warnings
    ), warnings
    # masked values count as released: the departure cut to its day, plus the hour, is time_hour again
    assert any(
        "'hour', 'scheduled_departure' together (masked values of 'scheduled_departure') determine" in w
        and "column 'time_hour'" in w
        for w in warnings
    ), warnings
    # minimal sets only: no superset of day + hour is named for time_hour
    assert not any("'day', 'hour', 'minute' together" in w and "'time_hour'" in w for w in warnings)


def test_data_check_command_prints_every_problem_and_exits_78(monkeypatch, capsys, tmp_path):
    from workbench.cli import main

    text = _with_inserted(COMMITTED_TEXT, "  jfk-operations: masked", "  jfk-operations: full\n")
    text = text.replace("        mask: hash\n", "        mask: hahs\n", 1)
    (tmp_path / "catalog.yaml").write_text(text)
    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_CATALOG_PATH", str(tmp_path / "catalog.yaml"))
    assert main(["data", "check"]) == 78
    out = capsys.readouterr().out
    assert "appears twice" in out and "unknown mask 'hahs'" in out
    assert out.count("error: ") == 2 and "2 error(s), 0 warning(s)" in out
