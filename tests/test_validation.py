"""Schema inference on flights (Spark and pandas) and validation of deliberately broken batches."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.data import load
from workbench.errors import ValidationError
from workbench.validation import (
    MISSING_COLUMN,
    OUT_OF_RANGE,
    TOO_MANY_NULLS,
    UNEXPECTED_COLUMN,
    UNSEEN_CATEGORIES,
    WRONG_TYPE,
    Schema,
    check,
    infer_schema,
    save_versioned,
    validate,
)

COLUMNS = ["carrier", "origin", "dest", "distance", "hour", "dep_delay", "arr_delay", "tailnum", "time_hour"]


@pytest.fixture(scope="module")
def january(spark, repo_settings):
    return load("flights", columns=COLUMNS, where="month = 1 AND day <= 10", settings=repo_settings, spark=spark)


@pytest.fixture(scope="module")
def schema(january):
    return infer_schema(january, name="flights")


def test_inferred_schema_describes_flights(schema, january):
    cols = schema.columns
    assert schema.rows == january.count()
    assert cols["distance"].type == "integer" and cols["distance"].min > 0 and not cols["distance"].nullable
    assert cols["arr_delay"].nullable and 0 < cols["arr_delay"].max_null_fraction < 0.1  # cancelled flights
    assert set(cols["origin"].domain) == {"EWR", "JFK", "LGA"}
    assert "UA" in cols["carrier"].domain
    assert cols["tailnum"].domain is None  # thousands of values: free text, not checked
    assert cols["time_hour"].type == "timestamp"


def test_spark_and_pandas_inference_agree(schema, january):
    from dataclasses import asdict

    frame = january.toPandas()
    from_pandas = infer_schema(frame, name="flights")
    for name, col in schema.columns.items():
        expected = asdict(col)
        if col.type == "integer" and col.nullable:  # pandas holds integers with nulls as floats
            expected["type"] = "float"
        assert asdict(from_pandas.columns[name]) == expected
    assert validate(frame, schema) == [] and validate(january, from_pandas) == []


def test_schema_round_trips_as_versioned_json(schema, tmp_path):
    first = save_versioned(schema, tmp_path)
    assert first.name == "flights-v1.json"
    assert save_versioned(Schema.load(first), tmp_path) == first  # same rules: same version
    changed = Schema.from_json(schema.to_json())
    changed.columns["distance"].max = 99999.0
    assert save_versioned(changed, tmp_path).name == "flights-v2.json"
    assert Schema.load(first).to_dict()["fingerprint"] == schema.fingerprint


def test_a_clean_batch_has_no_anomalies(schema, january):
    assert validate(january, schema) == []
    assert validate(january.limit(500).toPandas(), schema) == []


def _broken(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame.drop(columns=["dest"]).copy()
    bad["distance"] = bad["distance"].astype(object)
    bad.loc[bad.index[:3], "distance"] = "far"  # strings in a numeric column
    bad.loc[bad.index[3:8], "hour"] = 99  # out of range
    bad.loc[bad.index[:60], "carrier"] = "ZZ"  # an unseen carrier
    bad.loc[bad.index[:200], "origin"] = None  # nulls where training had none
    bad["surprise"] = 1
    return bad


def test_a_broken_pandas_batch_reports_each_anomaly(schema, january):
    anomalies = validate(_broken(january.limit(2000).toPandas()), schema)
    found = {(a.column, a.kind) for a in anomalies}
    assert ("dest", MISSING_COLUMN) in found
    assert ("surprise", UNEXPECTED_COLUMN) in found
    assert ("distance", WRONG_TYPE) in found
    assert ("hour", OUT_OF_RANGE) in found
    assert ("carrier", UNSEEN_CATEGORIES) in found
    assert ("origin", TOO_MANY_NULLS) in found
    wrong = next(a for a in anomalies if a.kind == WRONG_TYPE)
    assert wrong.count == 3 and "far" not in wrong.description  # counts, never data values
    unseen = next(a for a in anomalies if a.kind == UNSEEN_CATEGORIES)
    assert unseen.count == 60 and "ZZ" not in unseen.description


def test_a_broken_spark_batch_reports_the_same(spark, schema, january):
    from pyspark.sql import functions as F

    bad = (
        january.drop("dest")
        .withColumn("hour", F.when(F.col("distance") > 2000, F.lit(99)).otherwise(F.col("hour")))
        .withColumn("carrier", F.when(F.col("carrier") == "UA", F.lit("ZZ")).otherwise(F.col("carrier")))
        .withColumn("distance", F.col("distance").cast("string"))
    )
    kinds = {(a.column, a.kind) for a in validate(bad, schema)}
    assert kinds == {("dest", MISSING_COLUMN), ("hour", OUT_OF_RANGE), ("carrier", UNSEEN_CATEGORIES)}
    as_text = bad.withColumn("distance", F.when(F.col("hour") == 99, F.lit("far")).otherwise(F.col("distance")))
    assert ("distance", WRONG_TYPE) in {(a.column, a.kind) for a in validate(as_text, schema)}


def test_check_raises_with_the_anomalies(schema, january):
    batch = january.limit(100).toPandas().drop(columns=["carrier"])
    with pytest.raises(ValidationError) as err:
        check(batch, schema)
    assert [a.kind for a in err.value.anomalies] == [MISSING_COLUMN]
    assert "carrier" in str(err.value)


def test_pandera_export_flags_the_same_rows(schema, january):
    pytest.importorskip("pandera")
    import pandera.errors

    frame = january.limit(500).toPandas()
    schema.to_pandera().validate(frame)
    frame.loc[frame.index[:4], "hour"] = 99
    with pytest.raises(pandera.errors.SchemaErrors) as err:
        schema.to_pandera().validate(frame, lazy=True)
    assert (err.value.failure_cases["column"] == "hour").sum() == 4
