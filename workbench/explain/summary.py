"""The global explanation summary, logged with the model onto its training run.

`log_explanation_summary(model_uri)` writes the ranking (mean |SHAP| per feature), the beeswarm and
the ranking chart under `ARTIFACT_DIR` of the model's training run, and tags the run with its top
features, through `workbench.model_contract` (the one module reading and writing MLflow runs).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from .. import model_contract
from ..config import Settings, load_settings
from ..errors import ExplainError
from . import plots
from .core import ModelExplainer, load_explainer, sample_rows

__all__ = ["log_explanation_summary", "ARTIFACT_DIR", "TOP_FEATURES_TAG"]

ARTIFACT_DIR = "explain"
TOP_FEATURES_TAG = "workbench.explain.top_features"


def log_explanation_summary(
    model_uri: str,
    rows: pd.DataFrame | None = None,
    settings: Settings | None = None,
    explainer: ModelExplainer | None = None,
    n_rows: int = 1000,
    max_display: int = 15,
) -> dict[str, Any]:
    """Log what drives the model as artifacts of its training run (the run behind the registered version).

    Writes `explain/global_ranking.json` (mean |SHAP| per feature, method, rows, window),
    `explain/summary.png` (beeswarm) and `explain/ranking.png`, and tags the run with its top features
    (`workbench.explain.top_features`). `rows` defaults to `n_rows` rows of the training window.
    Running it again replaces the same artifacts.
    """
    settings = settings or load_settings()
    explainer = explainer or load_explainer(model_uri, settings, n_background=0)
    run_id = explainer.window.run_id if explainer.window else None
    if not run_id:
        raise ExplainError(f"Model {model_uri} has no training run to log the explanation summary to.")
    if rows is None:
        w = explainer.window
        rows = sample_rows(
            w.dataset,
            where=w.where,
            n=n_rows,
            seed=explainer.seed,
            columns=list(explainer.spec.raw_columns),
            purpose=f"explanation summary for {model_uri}",
            settings=settings,
            spark=explainer._spark,
        )
    e = explainer.explain(rows)
    ranking = e.ranking()
    summary = {
        "model": model_uri,
        "version": explainer.version,
        "method": e.method,
        "output": e.output_kind,
        "rows": len(e),
        "window": explainer.describe()["training_window"],
        "ranking": [
            {"feature": r.feature, "mean_abs_shap": float(r.mean_abs_shap), "share": float(r.share)}
            for r in ranking.itertuples()
        ],
    }
    top = ",".join(ranking["feature"].head(5))
    model_contract.log_to_run(
        run_id,
        texts={f"{ARTIFACT_DIR}/global_ranking.json": json.dumps(summary, indent=2)},
        figures={
            f"{ARTIFACT_DIR}/summary.png": plots.summary_plot(e, max_display=max_display),
            f"{ARTIFACT_DIR}/ranking.png": plots.ranking_plot(e, max_display=max_display),
        },
        tags={TOP_FEATURES_TAG: top},
        settings=settings,
        error=ExplainError,
    )
    return {
        "run_id": run_id,
        "artifacts": [
            f"{ARTIFACT_DIR}/global_ranking.json",
            f"{ARTIFACT_DIR}/summary.png",
            f"{ARTIFACT_DIR}/ranking.png",
        ],
        "top_features": top.split(","),
        "rows": len(e),
    }
