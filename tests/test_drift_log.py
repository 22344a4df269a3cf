"""The prediction log as the current window: written by the serving log writer, read per model and for a range
of serving days (other days' files never opened, only the compared columns read), its drift statistics equal
to those of the same rows given as a DataFrame."""

from __future__ import annotations

import dataclasses
import math
import uuid

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from workbench import drift
from workbench.errors import DriftError

FEATURES = ["dep_delay", "distance", "hour", "carrier", "origin"]
UNUSED = "air_time"  # logged, never compared: must not be read
ENTITY_KEY = "concat_ws('-', year, month, day, carrier, flight, origin, hour, minute)"
MODEL = "flights-late-log"


def _fixed(part: pd.DataFrame, day: int, shadow: bool, rng) -> pd.DataFrame:
    """What the service logs for answered rows: the fixed columns, then the model's input columns."""
    n = len(part)
    fixed = pd.DataFrame(
        {
            "request_id": [uuid.uuid4().hex for _ in range(n)],
            "entity_id": part["entity_id"].to_numpy(),
            "timestamp": pd.Timestamp(f"2013-02-{day:02d} 12:00", tz="UTC") + pd.to_timedelta(np.arange(n), "s"),
            "model_version": "2" if shadow else "1",
            "variant": "challenger" if shadow else "champion",
            "shadow": shadow,
            "prediction": rng.random(n),
            "latency_ms": 3.0,
            "fallback": False,
            "fallback_reason": None,
            "out_of_domain": [[] for _ in range(n)],
        }
    )
    return pd.concat([fixed, part.drop(columns=["entity_id", "day"]).reset_index(drop=True)], axis=1)


@pytest.fixture(scope="module")
def served(spark, repo_settings, tmp_path_factory):
    """Three days of February flights logged by `PredictionLog` (several micro-batches a day, each day's rows
    also scored by a shadow model), with the settings that point at that log."""
    from workbench.data import load
    from workbench.serving.predlog import PredictionLog

    settings = repo_settings.with_overrides(predictions_dir=str(tmp_path_factory.mktemp("predictions")))
    flights = load("flights", where="month = 2 AND day <= 3", settings=settings, spark=spark)
    rows = flights.select(F.expr(ENTITY_KEY).alias("entity_id"), "day", *FEATURES, UNUSED).toPandas()
    rng = np.random.default_rng(3)
    plog = PredictionLog.from_settings(settings, MODEL, roll_seconds=3600).start()
    try:
        for day, part in rows.groupby("day"):
            for chunk in np.array_split(np.arange(len(part)), 4):
                plog.submit(_fixed(part.iloc[chunk], int(day), False, rng))
            plog.submit(_fixed(part, int(day), True, rng))
        plog.flush()
    finally:
        plog.close()
    assert plog.written_rows == 2 * len(rows) and plog.write_errors == 0
    return settings, flights, rows


def test_a_range_of_serving_days_equals_the_same_rows_as_a_dataframe(spark, served):
    from workbench.data import load

    settings, flights, rows = served
    folder = f"{settings.predictions_uri}/{MODEL}"
    current = drift.load_prediction_log(
        settings, spark=spark, model=f"models:/{MODEL}@champion", dates=["2013-02-01", "2013-02-02"], columns=FEATURES
    )
    # partition pruning: only the files of the two days are part of the scan
    files = current.inputFiles()
    assert files and all("/date=2013-02-01/" in f or "/date=2013-02-02/" in f for f in files), files
    assert {f.split("/date=")[1][:10] for f in files} == {"2013-02-01", "2013-02-02"}
    assert folder.split("://")[-1] in files[0]
    # column pruning: the drift statistics' scan reads the compared columns, never the unused one
    plan = current.select(*FEATURES)._jdf.queryExecution().executedPlan().toString()
    read = plan[plan.index("ReadSchema:") :].split("\n")[0]
    assert all(c in read for c in FEATURES) and UNUSED not in read and UNUSED not in current.columns

    expected = int((rows["day"] <= 2).sum())
    assert current.count() == expected  # the shadow's copies are left out
    assert current.where(~F.col("shadow")).count() == expected

    reference = load("flights", columns=FEATURES, where="month = 1", settings=settings, spark=spark)
    same = flights.where("day <= 2").select(*FEATURES)
    from_log = drift.compute_drift(reference, current, FEATURES)
    direct = drift.compute_drift(reference, same, FEATURES)
    assert from_log.current_rows == direct.current_rows == expected
    assert from_log.reference_rows == direct.reference_rows
    for a, b in zip(from_log.features, direct.features, strict=True):
        for key, value in dataclasses.asdict(b).items():
            got = getattr(a, key)
            if isinstance(value, float) and not math.isnan(value):
                assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (b.feature, key)
            else:
                assert got == value or (got != got and value != value), (b.feature, key)
    assert from_log.drifted == direct.drifted and from_log.status == direct.status


def test_load_windows_takes_the_log_of_a_model_for_a_range_of_days(spark, served):
    settings, flights, rows = served
    windows = drift.load_windows(
        "flights",
        "month = 1",
        "",
        features=FEATURES,
        predictions=True,
        entity_key=ENTITY_KEY,
        prediction_dates="2013-02-03",
        prediction_model=MODEL,
        settings=settings,
        spark=spark,
    )
    assert windows.source == "prediction log" and UNUSED not in windows.current.columns
    assert windows.current.count() == int((rows["day"] == 3).sum())
    assert set(windows.current.select("entity_id").toPandas()["entity_id"]) == set(
        rows.loc[rows["day"] == 3, "entity_id"]
    )
    report = drift.compute_drift(windows.reference, windows.current, windows.features)
    assert report.current_rows == int((rows["day"] == 3).sum())
    # open-ended ranges and the whole log
    assert drift.load_prediction_log(settings, spark=spark, model=MODEL, dates=[None, "2013-02-01"]).count() == int(
        (rows["day"] == 1).sum()
    )
    assert drift.load_prediction_log(settings, spark=spark, model=MODEL).count() == len(rows)
    assert drift.load_prediction_log(settings, spark=spark, model=MODEL, shadow=True).count() == 2 * len(rows)


def test_a_wrong_model_or_days_are_named(spark, served):
    settings, _, _ = served
    with pytest.raises(DriftError, match=f"no prediction log of model 'other'.*{MODEL}"):
        drift.load_prediction_log(settings, spark=spark, model="other")
    with pytest.raises(DriftError, match="no day between 2013-03-01 and its last.*2013-02-01 to 2013-02-03"):
        drift.load_prediction_log(settings, spark=spark, model=MODEL, dates=["2013-03-01", ""])
    with pytest.raises(DriftError, match="not a day as YYYY-MM-DD"):
        drift.load_prediction_log(settings, spark=spark, model=MODEL, dates="February")
    with pytest.raises(DriftError, match="backwards"):
        drift.load_prediction_log(settings, spark=spark, model=MODEL, dates=["2013-02-03", "2013-02-01"])
    with pytest.raises(DriftError, match="not a model name"):
        drift.load_prediction_log(settings, spark=spark, model="../" + MODEL)
    with pytest.raises(DriftError, match=f"feature\\(s\\) nope not in the prediction log of model '{MODEL}'"):
        drift.load_prediction_log(settings, spark=spark, model=MODEL, columns=["nope"])
