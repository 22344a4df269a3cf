"""The evaluation gate: the pure decision, and the registry path with real MLflow and Spark."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench import registry
from workbench.gate import DO_NOT_SHIP, SHIP, compare, evaluate
from workbench.training import train


def _scores(rng, y, noise):
    return np.clip(y * 0.6 + 0.2 + rng.normal(0, noise, len(y)), 0, 1)


def test_compare_refuses_a_challenger_worse_on_one_slice():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    frame = pd.DataFrame({"carrier": np.where(np.arange(4000) < 1000, "B6", "UA"), "origin": "JFK"})
    champion = _scores(rng, y, 0.3)
    challenger = champion.copy()
    challenger[:1000] = rng.random(1000)  # useless on carrier B6 only
    result = compare(
        y, challenger, champion, frame, slices=["carrier", "origin"], tolerance=0.02, floor=0.6, min_rows=200
    )
    assert result.decision == DO_NOT_SHIP
    assert "carrier=B6" in result.failed_slices and "carrier=UA" not in result.failed_slices
    assert any("carrier=B6" in r for r in result.reasons)
    assert "DO NOT SHIP" in result.to_html() and "carrier=B6" in result.to_html()
    # The summary a notebook shows above its own Slices/Calibration/Latency sections has none of them.
    summary = result.decision_view._repr_html_()
    assert "DO NOT SHIP" in summary and "<h3>Overall</h3>" in summary
    assert "<h3>Slices</h3>" not in summary and "<h3>Slices</h3>" in result.to_html()


def test_compare_ships_within_tolerance_and_skips_small_slices():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 3000)
    frame = pd.DataFrame({"origin": np.where(np.arange(3000) < 50, "EWR", "LGA")})
    champion = _scores(rng, y, 0.3)
    challenger = champion.copy()
    challenger[:50] = rng.random(50)  # worse, but on a slice too small to judge
    result = compare(y, challenger, champion, frame, slices=["origin"], tolerance=0.01, min_rows=100)
    assert result.decision == SHIP
    assert result.slices.set_index("value").loc["EWR", "verdict"] == "not judged"


def test_without_a_champion_the_floor_decides():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1000)
    good = _scores(rng, y, 0.3)
    assert compare(y, good, None, floor=0.7).decision == SHIP
    refused = compare(y, good, None, floor=0.99)
    assert refused.decision == DO_NOT_SHIP and "misses the floor" in refused.reasons[0]


def test_gate_promotes_a_good_challenger_and_refuses_a_worse_one(trained_model, mlflow_settings, spark):
    name, window = "gate-test", "month = 2 AND day <= 10"
    kwargs = dict(
        name=name,
        eval_where=window,
        slices=["carrier", "origin"],
        min_rows=150,
        tolerance=0.02,
        floor=0.55,
        settings=mlflow_settings,
        spark=spark,
    )

    registry.register(trained_model.model_uri, name, alias="challenger", settings=mlflow_settings)
    first = evaluate(promote=True, **kwargs)  # no champion yet: the floor decides
    assert first.decision == SHIP and first.promoted and first.champion_version is None
    assert registry.get_version(name, "champion", mlflow_settings).version == 1

    worse = train(
        "flights",
        feature_function="none",
        features=["minute"],
        model="logistic",
        train_where="month = 1",
        settings=mlflow_settings,
        spark=spark,
    )
    registry.register(worse.model_uri, name, alias="challenger", settings=mlflow_settings)
    refused = evaluate(promote=True, **kwargs)
    assert refused.decision == DO_NOT_SHIP and not refused.promoted
    assert refused.challenger_version == 2 and refused.champion_version == 1
    assert refused.failed_slices and any(r.startswith("slice ") for r in refused.reasons)
    assert registry.get_version(name, "champion", mlflow_settings).version == 1  # champion unchanged
    page = refused.to_html()
    assert page.index("DO NOT SHIP") < page.index("Overall") and refused.failed_slices[0] in page
    assert refused.latency_ms and not refused.calibration.empty
