"""Explainability: why did the model say that (one row), and what drives it (all rows)?

    from workbench import explain
    ex = explain.load_explainer(explain.default_model("DATASET"), n_background=200)   # models:/DATASET-<target>@challenger
    e = ex.explain(explain.sample_rows("DATASET", where="...", n=500))
    e.ranking(); explain.summary_plot(e); explain.dependence_plots(e, top=3)
    local = ex.local(e, row_id=0); explain.local_figure(local); local.agreement.statement()
    explain.explore(ex, e)                                   # the ipywidgets explorer
    explain.explain_spark(model_uri, spark_df)               # every row, at Spark scale, to parquet
    explain.log_explanation_summary(model_uri)               # ranking + plots on the version's run
    explain.attribution_drift(model_uri, reference_pdf, current_pdf)   # explanation drift

Modules: `results` (the result types and pure computations over them), `core` (loading, explanations,
lineage, drift), `summary` (the MLflow summary), `shap_adapter` and `lime_adapter` (the only modules
importing shap and lime), `plots`, `widgets`, `spark`.
"""

from .core import ModelExplainer, attribution_drift, default_model, load_explainer, sample_rows, training_window
from .plots import (
    dependence_plot,
    dependence_plots,
    figure_png,
    lime_plot,
    local_figure,
    ranking_plot,
    summary_plot,
    waterfall_plot,
)
from .results import Agreement, Explanation, LocalExplanation, TrainingWindow, agreement_table, compare_rankings
from .spark import explain_spark, ranking_spark, shap_spark
from .summary import log_explanation_summary
from .widgets import ExplanationExplorer, explore

__all__ = [
    "load_explainer",
    "default_model",
    "ModelExplainer",
    "Explanation",
    "LocalExplanation",
    "Agreement",
    "TrainingWindow",
    "sample_rows",
    "training_window",
    "agreement_table",
    "attribution_drift",
    "compare_rankings",
    "log_explanation_summary",
    "summary_plot",
    "ranking_plot",
    "dependence_plot",
    "dependence_plots",
    "waterfall_plot",
    "lime_plot",
    "local_figure",
    "figure_png",
    "explain_spark",
    "shap_spark",
    "ranking_spark",
    "explore",
    "ExplanationExplorer",
]
