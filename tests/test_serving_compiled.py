"""The compiled plan against sklearn itself, on synthetic frames (no Spark, no MLflow): each supported step and
estimator, nulls, unseen and infrequent categories, and a step the compiler does not know. The equality on
10,000 real rows of the lake is in tests/integration/test_serving_fast.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.estimators import build_pipeline
from workbench.features import model_frame
from workbench.serving.compiled import NotCompilable, compile_pipeline

NUMERIC = ["a", "b", "c"]
CATEGORICAL = ["k", "m"]


def data(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.integers(0, 100, n).astype("float64"),
            "c": rng.exponential(size=n),
            "k": rng.choice(["x", "y", "z", "rare"], n, p=[0.5, 0.3, 0.195, 0.005]),
            "m": rng.choice(["p", "q"], n),
        }
    )
    for col in frame.columns:  # nulls everywhere
        frame.loc[rng.random(n) < 0.05, col] = None
    y = pd.Series((frame["a"].fillna(0) + (frame["k"] == "x") + rng.normal(size=n) > 0.5).astype(int))
    return model_frame(frame, NUMERIC, CATEGORICAL), y


def columns(X: pd.DataFrame) -> dict:
    return {c: X[c].to_numpy(dtype="float64" if c in NUMERIC else object) for c in X.columns}


def estimators():
    from lightgbm import LGBMClassifier, LGBMRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    return [
        (LGBMClassifier(n_estimators=30, verbose=-1, n_jobs=1), True),
        (LogisticRegression(max_iter=300), True),
        (LGBMRegressor(n_estimators=30, verbose=-1, n_jobs=1), False),
        (Ridge(), False),
    ]


@pytest.mark.parametrize("estimator,classifier", estimators(), ids=lambda e: type(e).__name__)
def test_the_compiled_plan_equals_the_pipeline(estimator, classifier):
    X, y = data(3000)
    pipe = build_pipeline(NUMERIC, CATEGORICAL, estimator).fit(X, y if classifier else X["b"].fillna(0) + y)
    plan = compile_pipeline(pipe, NUMERIC, CATEGORICAL, classifier)
    test, _ = data(2000, seed=1)
    test.loc[::97, "k"] = "never-seen"  # unseen categories go where sklearn sends them (the infrequent column)
    expected = pipe.predict_proba(test)[:, 1] if classifier else pipe.predict(test)
    assert np.abs(plan.predict(columns(test), len(test)) - expected).max() <= 1e-12
    transformed = pipe.named_steps["preprocess"].transform(test).to_numpy(dtype="float64")
    assert np.array_equal(plan.transform(columns(test), len(test)), transformed, equal_nan=True)


def test_an_encoder_that_refuses_unseen_categories_raises_like_sklearn():
    from sklearn.linear_model import LogisticRegression

    X, y = data(1000)
    pipe = build_pipeline(NUMERIC, CATEGORICAL, LogisticRegression(max_iter=200))
    pipe.set_params(preprocess__cat__onehot__handle_unknown="error", preprocess__cat__onehot__min_frequency=None)
    pipe.fit(X, y)
    plan = compile_pipeline(pipe, NUMERIC, CATEGORICAL, True)
    bad = X.head(3).copy()
    bad.loc[1, "k"] = "never-seen"
    with pytest.raises(ValueError):
        pipe.predict_proba(bad)
    with pytest.raises(ValueError, match="unseen"):
        plan.predict(columns(bad), 3)
    good = X.head(50)
    assert np.abs(plan.predict(columns(good), 50) - pipe.predict_proba(good)[:, 1]).max() <= 1e-12


def test_a_step_the_compiler_does_not_know_is_named():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MinMaxScaler

    X, y = data(500)
    pipe = build_pipeline(NUMERIC, CATEGORICAL, LogisticRegression(max_iter=200))
    pipe.set_params(preprocess__num__scale=MinMaxScaler()).fit(X, y)
    with pytest.raises(NotCompilable, match="MinMaxScaler"):
        compile_pipeline(pipe, NUMERIC, CATEGORICAL, True)
    from sklearn.ensemble import RandomForestClassifier

    pipe = build_pipeline(NUMERIC, CATEGORICAL, RandomForestClassifier(n_estimators=3)).fit(X, y)
    with pytest.raises(NotCompilable, match="RandomForestClassifier"):
        compile_pipeline(pipe, NUMERIC, CATEGORICAL, True)


# ---- the feature function's fast path against its pandas reference (edges; a real month is in the integration test)
def test_the_fast_decoration_equals_the_pandas_reference_on_edge_rows():
    from workbench import features

    weather = pd.DataFrame(
        {
            "origin": ["EWR", "EWR", "JFK", None],
            "year": [2013, 2013, 2013, 2013],
            "month": [1, 1, 1, 1],
            "day": [1, 1, 2, 1],
            "hour": [5, 5, 6, 5],  # a duplicate key: the first row wins in both
            **{c: [1.5, 2.5, None, 4.0] for c in features._WEATHER},
        }
    )
    planes = pd.DataFrame(
        {
            "tailnum": ["N1", "N2", None],
            "year": [2001, None, 1999],
            "seats": [100, 50, 20],
            "engines": [2, 1, 1],
            "type": ["Fixed", None, "Rotor"],
            "manufacturer": ["A", "B", "C"],
            "engine": ["Turbo", "Piston", None],
        }
    )
    deco = features.get("flights_context").prepare(lookups={"weather": weather, "planes": planes})
    raw = pd.DataFrame(
        {
            "origin": ["EWR", "JFK", None, "EWR", "LGA", "EWR"],
            "tailnum": ["N1", "N2", "N1", None, "N9", "N2"],
            "year": [2013, 2013, 2013, None, 2013, 2013],
            "month": [1, 1, 1, 1, 13, 2],
            "day": [1, 2, 1, 1, 1, 30],
            "hour": [5.0, 6.0, 5.0, 5.0, None, 1.0],
            "distance": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        },
        dtype=object,
    )
    reference = deco.apply_pandas(raw)
    columns = {c: raw[c].tolist() for c in raw.columns}
    fast = deco.fast(columns, len(raw))
    assert set(fast) == set(deco.function.adds)
    for col, kind in deco.function.adds.items():
        ours = pd.Series(fast[col], dtype="float64" if kind == "double" else object)
        pd.testing.assert_series_equal(ours, reference[col].reset_index(drop=True), check_names=False)
