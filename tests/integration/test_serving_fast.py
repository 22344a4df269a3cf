"""The pandas-free path on real rows of the sample lake: the feature function's fast twin gives the same columns as
its pandas reference on every row of a month (nulls included), and the compiled plan of each registered version
(LightGBM and the logistic regression) answers as `pyfunc.predict` does on the decorated rows, to 1e-9, on every
row of that month (more than 10,000)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from workbench import registry
from workbench.features import model_frame
from workbench.serving.fastpath import SAMPLE_ROWS, Frame, RawBatch, model_input, predict, snapshot_sample
from workbench.serving.model import Lookups, load_version, snapshot_lookups

from ..serving_support import SERVING_MODEL, raw_rows

pytestmark = pytest.mark.integration

MONTH = "month = 3"


@pytest.fixture(scope="module")
def month(trained_model, serving_models, mlflow_settings, spark, tmp_path_factory):
    spec = trained_model.spec
    raw = raw_rows(spec, mlflow_settings, spark, where=MONTH, n=10**9)
    settings = mlflow_settings.with_overrides(serving_cache_dir=str(tmp_path_factory.mktemp("cache")))
    snapshot_lookups(settings, [spec.feature_function], spark)
    snapshot_sample(settings, spec, spark)  # what `workbench serve` keeps for the proof at load
    reference = spec.decorator(mlflow_settings, spark)  # lookups read through Spark, as training does
    return spec, raw, settings, reference


def _json_values(raw: pd.DataFrame) -> dict[str, list]:
    """The raw columns as the validated JSON of a request gives them (None for a null)."""
    out = {}
    for c in raw.columns:
        values = raw[c].astype(object).where(raw[c].notna(), None).tolist()
        out[c] = [
            int(v) if isinstance(v, float) and v.is_integer() and c in ("year", "month", "day") else v for v in values
        ]
    return out


def test_the_fast_decoration_equals_the_pandas_reference_on_every_row_of_a_month(month):
    spec, raw, _, reference = month
    assert len(raw) > 10_000
    expected = reference.apply_pandas(raw).reset_index(drop=True)
    fast = reference.fast(_json_values(raw), len(raw))
    assert set(fast) == set(reference.function.adds)
    nulls = 0
    for col, kind in reference.function.adds.items():
        ours = pd.Series(fast[col], dtype="float64" if kind == "double" else object, name=col)
        pd.testing.assert_series_equal(ours, expected[col], check_names=False)
        nulls += int(ours.isna().sum())
    assert nulls > 0  # the month holds rows without weather or plane: the null paths are exercised


@pytest.mark.parametrize("which", ["lightgbm", "logistic"])
def test_the_compiled_plan_equals_pyfunc_predict_on_a_month_of_real_rows(month, serving_models, which):
    spec, raw, settings, reference = month
    version = serving_models[which]
    model = load_version(settings, SERVING_MODEL, version, Lookups(settings))
    assert model.path.startswith("compiled"), model.path
    assert model.proof_rows >= SAMPLE_ROWS  # proven at load on the stored sample of raw rows, decorated both ways
    X = model_frame(reference.apply_pandas(raw), list(spec.numeric), list(spec.categorical)).reset_index(drop=True)
    theirs = np.asarray(mlflow.pyfunc.load_model(registry.model_uri(SERVING_MODEL, version)).predict(X))[:, 1]
    ours = model.compiled.predict(Frame.from_pandas(X).cols, len(X))
    assert len(X) > 10_000
    assert np.abs(ours - theirs).max() <= 1e-9
    # the whole pandas-free path: raw JSON values -> fast decoration -> compiled plan
    batch = RawBatch(rows=[], columns=list(raw.columns), cols=_json_values(raw), n=len(raw))
    whole = predict(model, model_input(model, batch, {}))
    assert np.abs(whole - theirs).max() <= 1e-9
