"""The catalog format: the committed catalog is valid and says what the sample lake needs; typos fail
on load with a message naming the file, the dataset and the field; columns are checked against the data."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import REPO
from workbench.data.catalog import load_catalog, parse_catalog
from workbench.errors import CatalogError

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
