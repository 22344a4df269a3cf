"""A/B analysis: the frequentist and Bayesian figures against independent computations, the log reader,
and notebook 06 (parameters cell, then run end to end on its defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import betaln

from workbench import experiments
from workbench.errors import ExperimentError
from workbench.serving.predlog import PredictionLog

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "06_ab_analysis.ipynb"


def trials(n_a: int, s_a: int, n_b: int, s_b: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": ["champion"] * n_a + ["challenger"] * n_b,
            "success": [1] * s_a + [0] * (n_a - s_a) + [1] * s_b + [0] * (n_b - s_b),
        }
    )


def exact_prob_b_beats_a(a1, b1, a2, b2) -> float:
    """P(X_B > X_A) for X_A ~ Beta(a1, b1), X_B ~ Beta(a2, b2), by the closed-form sum (integer a2)."""
    i = np.arange(a2)
    return float(np.sum(np.exp(betaln(a1 + i, b1 + b2) - np.log(b2 + i) - betaln(1 + i, b2) - betaln(a1, b1))))


def test_the_z_test_agrees_with_the_chi_square_test_and_its_p_value():
    result = experiments.compare(trials(1000, 700, 1000, 740))
    chi2, p, _, _ = stats.chi2_contingency(np.array([[700, 300], [740, 260]]), correction=False)
    assert result.z**2 == pytest.approx(chi2) and result.chi2 == pytest.approx(chi2)
    assert result.p_value == pytest.approx(p)
    assert result.difference == pytest.approx(0.04) and result.ci_low < 0.04 < result.ci_high
    assert result.significant


def test_the_bayesian_figures_match_the_closed_form():
    result = experiments.compare(trials(400, 260, 380, 265), draws=400_000)
    exact = exact_prob_b_beats_a(1 + 260, 1 + 140, 1 + 265, 1 + 115)
    assert result.prob_b_beats_a == pytest.approx(exact, abs=0.005)
    assert result.table.loc["challenger", "posterior_mean"] == pytest.approx(266 / 382)
    assert result.expected_loss_b < result.expected_loss_a


def test_no_difference_is_not_significant_and_the_verdict_says_so():
    result = experiments.compare(trials(500, 250, 500, 251))
    assert not result.significant and 0.4 < result.prob_b_beats_a < 0.6
    assert "no significant difference" in result.verdict


def test_outcomes_join_on_request_id_and_success_is_a_right_decision():
    preds = pd.DataFrame(
        {
            "request_id": ["a", "b", "c", "d"],
            "variant": ["champion", "champion", "challenger", "challenger"],
            "prediction": [0.9, 0.2, 0.7, 0.1],
        }
    )
    outcomes = pd.DataFrame({"request_id": ["a", "b", "c", "zz"], "late": [1, 1, 0, 1]})
    joined = experiments.join_outcomes(preds, outcomes, outcome="late")
    assert list(joined.request_id) == ["a", "b", "c"] and list(joined.success) == [1, 0, 0]
    assert list(experiments.join_outcomes(preds, outcomes, outcome="late", success="outcome").success) == [1, 1, 0]


def test_missing_variants_and_non_binary_outcomes_are_explained():
    with pytest.raises(ExperimentError, match="variant 'challenger'"):
        experiments.compare(trials(10, 5, 0, 0))
    with pytest.raises(ExperimentError, match="0/1"):
        experiments.join_outcomes(
            pd.DataFrame({"request_id": ["a"], "variant": ["x"], "prediction": [0.5]}),
            pd.DataFrame({"request_id": ["a"], "outcome": [7]}),
        )


def test_the_prediction_log_is_read_back_without_shadow_rows(tmp_path, repo_settings):
    predictions, _ = experiments.simulate(rows=50)
    shadow = predictions.head(10).assign(shadow=True, variant="challenger")
    log = PredictionLog(tmp_path.as_uri(), "m").start()
    for frame in (predictions, shadow):
        log.submit(frame.assign(latency_ms=1.0, fallback_reason=None, out_of_domain=[[] for _ in range(len(frame))]))
    log.close()
    settings = repo_settings.with_overrides(predictions_dir=str(tmp_path))
    back = experiments.read_predictions(settings, "m")
    assert len(back) == 50 and not back.shadow.any()
    assert len(experiments.read_predictions(settings, "m", include_shadow=True)) == 60
    assert len(experiments.read_predictions(settings, "m", since="2026-01-01T00:00:30")) == 20
    assert experiments.read_predictions(settings, "nothing-logged").empty


def test_the_notebook_has_a_parameters_cell_and_no_definitions():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["cells"][0]["cell_type"] == "markdown"
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and nb["cells"].index(params[0]) == 1
    for line in "".join(params[0]["source"]).splitlines():
        name, _, rest = line.partition("=")
        assert name.strip().isidentifier() and "#" in rest, line
        compile(line, "parameters", "exec")
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "def " not in code and "class " not in code
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def test_the_notebook_runs_on_its_defaults(tmp_path):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "06.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={"simulate_rows": 2000},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(NOTEBOOK.parent.parent),
    )
    text = out.read_text()
    assert "P(challenger beats champion)" in text and "Analysing a simulated experiment" in text
