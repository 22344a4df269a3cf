"""Feature functions: one pandas implementation, the same result on pandas and on Spark."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench import features
from workbench.data import load
from workbench.errors import TrainingError

KEY = ["carrier", "flight", "scheduled_departure"]


def test_the_registry_names_its_functions():
    assert {"flights_context", "none"} <= set(features.names())
    with pytest.raises(TrainingError, match="flights_context"):
        features.get("flight_context")


@pytest.fixture(scope="module")
def raw(spark, repo_settings):
    return load("flights", where="month = 1 AND day = 2", settings=repo_settings, spark=spark)


@pytest.fixture(scope="module")
def decorator(spark, repo_settings):
    return features.get("flights_context").prepare(repo_settings, spark)


def test_spark_and_pandas_decoration_agree(raw, decorator):
    by_spark = decorator.apply_spark(raw).toPandas().sort_values(KEY).reset_index(drop=True)
    by_pandas = decorator.apply_pandas(raw.toPandas()).sort_values(KEY).reset_index(drop=True)
    added = list(decorator.function.adds)
    assert len(by_spark) == len(by_pandas) == raw.count()
    assert set(added) <= set(by_spark.columns)
    pd.testing.assert_frame_equal(by_spark[KEY + added], by_pandas[KEY + added], check_dtype=False)
    assert by_pandas["temp"].notna().mean() > 0.9  # weather found for nearly every flight
    assert by_pandas["plane_seats"].notna().mean() > 0.7  # planes for most tail numbers
    assert by_pandas["day_of_week"].eq(2.0).all()  # 2013-01-02 was a Wednesday


def test_decoration_keeps_rows_and_order_with_duplicate_lookups():
    fn = features.get("flights_context")
    weather = pd.DataFrame(
        {
            "origin": ["JFK", "JFK"],
            "year": [2013] * 2,
            "month": [1] * 2,
            "day": [1] * 2,
            "hour": [5] * 2,
            **{
                c: [1.0, 2.0]
                for c in ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
            },
        }
    )
    planes = pd.DataFrame(
        {
            "tailnum": ["N1", "N1"],
            "year": [2000, 2001],
            "seats": [100, 100],
            "engines": [2, 2],
            "type": ["t", "t"],
            "manufacturer": ["m", "m"],
            "engine": ["e", "e"],
        }
    )
    deco = fn.prepare(lookups={"weather": weather, "planes": planes})
    flights = pd.DataFrame(
        {
            "origin": ["JFK", "LGA", "JFK"],
            "tailnum": ["N1", None, "N9"],
            "year": [2013] * 3,
            "month": [1] * 3,
            "day": [1] * 3,
            "hour": [5] * 3,
        },
        index=[7, 3, 5],
    )
    out = deco.apply_pandas(flights)
    assert list(out.index) == [7, 3, 5]
    assert out["temp"].tolist()[0] == 1.0 and pd.isna(out["temp"].tolist()[1]) and out["temp"].tolist()[2] == 1.0
    assert out["plane_age"].tolist()[0] == 13.0 and out["plane_type"].tolist()[1:] == [None, None]


def test_a_missing_required_column_is_named():
    deco = features.get("flights_context").prepare(lookups={"weather": pd.DataFrame(), "planes": pd.DataFrame()})
    with pytest.raises(TrainingError, match="tailnum"):
        deco.apply_pandas(pd.DataFrame({"origin": ["JFK"], "hour": [5], "year": [2013], "month": [1], "day": [1]}))


def test_model_frame_selects_and_coerces():
    frame = pd.DataFrame({"a": [1, None], "b": ["x", None], "c": [True, False], "extra": [0, 0]})
    out = features.model_frame(frame, ["a"], ["b", "c"])
    assert list(out.columns) == ["a", "b", "c"]
    assert out["a"].dtype == "float64" and out["b"].tolist() == ["x", None] and out["c"].tolist() == ["True", "False"]
    with pytest.raises(TrainingError, match="missing_one"):
        features.model_frame(frame, ["missing_one"], [])


def test_masked_reads_still_get_weather(spark, repo_settings, decorator):
    """Data scientists read flights masked (time_hour cut to its year): the weather join must not depend on it."""
    masked = load(
        "flights",
        where="month = 1 AND day = 2",
        settings=repo_settings.with_overrides(groups=("data-scientists",)),
        spark=spark,
    )
    assert masked.select("time_hour").distinct().count() == 1  # the mask is really on
    out = decorator.apply_pandas(masked.toPandas())
    assert out["temp"].notna().mean() > 0.9
    assert out["plane_seats"].notna().mean() > 0.7  # tailnum is hashed in flights and planes alike
