"""workbench.explain: SHAP through the sealed pipeline, LIME, the explorer widget, Spark batches, MLflow summary.

The model is the session's shared `trained_model` (conftest: LightGBM, 20 trees, January, @champion in a
throw-away SQLite MLflow store). The model-agnostic fallback is checked on a logistic-regression pipeline
fitted in memory on that model's holdout (the fallback needs no registry).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest

from workbench import explain
from workbench.errors import ExplainError
from workbench.estimators import build_pipeline
from workbench.model_contract import ModelSpec

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "03_explain.ipynb"

# The first test may pay for training the session's model on Spark: allow for a machine shared with other suites.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def store(trained_model, mlflow_settings, tmp_path_factory):
    return {
        "settings": mlflow_settings,
        "root": tmp_path_factory.mktemp("explain"),
        "tree": trained_model,
        "uri": f"models:/{mlflow_settings.model_name}@champion",
    }


@pytest.fixture(scope="module")
def tree_explainer(store, spark):
    return explain.load_explainer(store["uri"], store["settings"], spark, n_background=60, lime_samples=1000)


@pytest.fixture(scope="module")
def rows(store, spark):
    return explain.sample_rows(
        "flights", where="month = 2 AND day <= 3", n=150, seed=1, settings=store["settings"], spark=spark
    )


@pytest.fixture(scope="module")
def tree_explanation(tree_explainer, rows):
    return tree_explainer.explain(rows)


def test_tree_shap_adds_up_to_the_lightgbm_log_odds_margin(tree_explainer, tree_explanation, store):
    e = tree_explanation
    assert tree_explainer.method == "tree" and e.output_kind == "log-odds"
    pipeline = store["tree"].pipeline
    margin = pipeline[-1].predict(pipeline[:-1].transform(e.data), raw_score=True)
    np.testing.assert_allclose(e.base_values + e.values.sum(axis=1), margin, atol=1e-4, rtol=0)
    np.testing.assert_allclose(e.prediction, pipeline.predict_proba(e.data)[:, 1], atol=1e-9)


def test_attributions_are_one_value_per_raw_feature_with_raw_names(tree_explanation, store):
    spec: ModelSpec = store["tree"].spec
    assert list(tree_explanation.values.columns) == spec.features  # 'carrier', not 'carrier_AA'
    assert tree_explanation.values.shape == (150, len(spec.features))
    assert tree_explanation.ids == list(range(150))
    assert not tree_explanation.values.isna().any().any()
    ranking = tree_explanation.ranking()
    assert set(ranking["feature"]) == set(spec.features)
    assert ranking["mean_abs_shap"].is_monotonic_decreasing and abs(ranking["share"].sum() - 1) < 1e-9


def test_background_comes_from_the_training_window_in_the_lineage(tree_explainer, store):
    window = tree_explainer.window
    assert window.dataset == "flights" and window.run_id == store["tree"].run_id
    assert "(month = 1)" in window.where and "scheduled_departure" in window.where
    background = tree_explainer.background
    assert len(background) == 60 and list(background.columns) == store["tree"].spec.features


def test_permutation_fallback_for_a_non_tree_model_adds_up(store, tree_explainer, rows):
    from sklearn.linear_model import LogisticRegression

    spec: ModelSpec = store["tree"].spec
    pipeline = build_pipeline(list(spec.numeric), list(spec.categorical), LogisticRegression(max_iter=500))
    pipeline.fit(store["tree"].holdout, store["tree"].holdout_label)
    background = tree_explainer.background.head(10)
    ex = explain.ModelExplainer("in-memory:logistic", spec, tree_explainer.decorator, pipeline, background=background)
    assert ex.method == "permutation"
    e = ex.explain(rows.head(3))
    assert list(e.values.columns) == spec.features
    np.testing.assert_allclose(e.output, pipeline.decision_function(e.data), atol=1e-4, rtol=0)  # log-odds
    with pytest.raises(ExplainError, match="method='tree' is not possible"):
        explain.ModelExplainer("in-memory:logistic", spec, tree_explainer.decorator, pipeline, method="tree")


def test_lime_gives_weights_for_the_named_features_and_states_agreement(tree_explainer, tree_explanation):
    local = tree_explainer.local(tree_explanation, 3)
    assert list(local.lime.index) == tree_explainer.features
    assert (local.lime != 0).sum() >= 5
    again = tree_explainer.local(tree_explanation, 3)
    pd.testing.assert_series_equal(local.lime, again.lime)  # same row + seed = same weights
    a = local.agreement
    assert 0 <= a.sign_agreement <= 1 and 0 <= a.top_overlap <= 1
    assert "SHAP and LIME" in a.statement() and "top 5" in a.statement()
    table = explain.agreement_table([local])
    assert list(table["row_id"]) == [3]
    fig = explain.local_figure(local)
    assert len(fig.axes) == 2


def test_explorer_filters_default_to_the_catalog_slices_and_dropped_ones_are_named(tree_explainer, tree_explanation):
    x = explain.explore(tree_explainer, tree_explanation)
    assert list(x.filters) == ["carrier", "origin"] and x.dropped == []  # the flights slices role
    x = explain.explore(tree_explainer, tree_explanation, filters=("carrier", "no_such_column"))
    assert list(x.filters) == ["carrier"] and x.dropped == ["no_such_column"]
    assert "no_such_column" in x.note.value and "dropped" in x.note.value


def test_explorer_callbacks_update_the_display(tree_explainer, tree_explanation):
    x = explain.explore(tree_explainer, tree_explanation, filters=("carrier", "month"))
    first_id, first_png, first_html = x.current.row_id, x.waterfall.value, x.summary.value
    other = tree_explanation.ids[5]
    x.row.value = other
    assert x.current.row_id == other != first_id
    assert x.waterfall.value != first_png and x.lime.value and x.summary.value != first_html
    assert f"{tree_explanation.prediction[other]:.3f}" in x.summary.value

    carrier = tree_explanation.raw.loc[other, "carrier"]
    x.filters["carrier"].value = carrier
    ids = [value for _, value in x.row.options]
    assert ids and all(tree_explanation.raw.loc[i, "carrier"] == carrier for i in ids)
    assert x.current.row_id in ids

    before = x.dependence_plot.value
    x.dependence.value = x.dependence.options[1]
    assert x.dependence_plot.value != before


def test_explain_spark_matches_the_in_memory_values(store, spark, tree_explainer, tmp_path):
    from pyspark.sql import functions as F

    from workbench.data import load

    source = tmp_path / "rows"
    (
        load("flights", where="month = 2 AND day <= 2", settings=store["settings"], spark=spark)
        .withColumn("row_id", F.monotonically_increasing_id())
        .write.partitionBy("month")
        .parquet(str(source))
    )
    df = spark.read.parquet(str(source))
    uri = store["uri"]
    written = explain.explain_spark(uri, df, settings=store["settings"], explainer=tree_explainer)
    version = f"{tree_explainer.name}-v{tree_explainer.version}"
    assert written == f"{source.as_uri()}_shap/{version}"  # next to the input
    with pytest.raises(ExplainError, match="already exists"):
        explain.explain_spark(uri, df, settings=store["settings"], explainer=tree_explainer)

    out = spark.read.parquet(written).toPandas().set_index("row_id").sort_index()
    raw = df.toPandas().set_index("row_id").sort_index()
    e = tree_explainer.explain(raw)
    assert len(out) == len(raw) > 100
    features = tree_explainer.features
    np.testing.assert_allclose(out[[f"shap_{f}" for f in features]].to_numpy(), e.values.to_numpy(), atol=1e-9)
    np.testing.assert_allclose(out["shap_base_value"], e.base_values, atol=1e-9)
    np.testing.assert_allclose(out["prediction"], e.prediction, atol=1e-9)
    assert (out["carrier"] == raw["carrier"]).all()  # input columns kept
    spark_ranking = explain.ranking_spark(spark.read.parquet(written))
    pd.testing.assert_frame_equal(
        spark_ranking.drop(columns="rank"), e.ranking().drop(columns="rank"), check_exact=False, atol=1e-9
    )


def test_attribution_drift_ranks_the_features_whose_influence_moved(tree_explainer, store, spark, rows):
    january = explain.sample_rows("flights", where="month = 1", n=100, seed=2, settings=store["settings"], spark=spark)
    drift = explain.attribution_drift(store["uri"], january, rows, explainer=tree_explainer)
    assert set(drift["feature"]) == set(tree_explainer.features)
    assert drift["change"].abs().is_monotonic_decreasing
    assert {"reference", "current", "share_change", "reference_rank", "current_rank"} <= set(drift.columns)
    same = explain.attribution_drift(store["uri"], rows, rows, explainer=tree_explainer)
    assert np.allclose(same["change"], 0)


def test_global_summary_is_logged_on_the_versions_run(tree_explainer, rows, store):
    from mlflow import MlflowClient

    result = explain.log_explanation_summary(
        store["uri"], rows=rows, settings=store["settings"], explainer=tree_explainer
    )
    run_id = store["tree"].run_id
    assert result["run_id"] == run_id
    client = MlflowClient(tracking_uri=store["settings"].tracking_uri)
    names = {a.path for a in client.list_artifacts(run_id, "explain")}
    assert names == {"explain/global_ranking.json", "explain/summary.png", "explain/ranking.png"}
    ranking = json.loads(
        Path(client.download_artifacts(run_id, "explain/global_ranking.json", str(store["root"]))).read_text()
    )
    assert {r["feature"] for r in ranking["ranking"]} == set(tree_explainer.features)
    assert ranking["version"] == tree_explainer.version and ranking["rows"] == len(rows)
    assert client.get_run(run_id).data.tags["workbench.explain.top_features"] == ",".join(result["top_features"])


def test_missing_raw_columns_are_named(tree_explainer, rows):
    with pytest.raises(ExplainError, match="tailnum"):
        tree_explainer.explain(rows.drop(columns=["tailnum"]))


# ---- the notebook -----------------------------------------------------------------------------------
def test_notebook_is_stored_clean_with_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.cells[0].cell_type == "markdown"
    params = nb.cells[1]
    assert "parameters" in params.metadata.get("tags", [])
    names = {}
    exec(params.source, {}, names)
    required = {"model", "dataset", "where", "n_background", "n_explain", "row_ids"}
    assert required <= set(names)
    assert required <= set(papermill.inspect_notebook(str(NOTEBOOK)))  # every default parses for the runner
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
            assert not any(line.lstrip().startswith(("def ", "class ")) for line in cell.source.splitlines())


def test_notebook_runs_headless_against_a_registered_model(store, tmp_path, monkeypatch):
    """Run with papermill directly (`workbench run` comes with the jobs branch)."""
    settings = store["settings"]
    for key, value in {
        "HOME": str(REPO),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_ARTIFACTS": settings.mlflow_artifacts,
        "MODEL_NAME": settings.model_name,
        "SPARK_MASTER": "local[2]",
        "SPARK_SHUFFLE_PARTITIONS": "4",
    }.items():
        monkeypatch.setenv(f"WORKBENCH_{key}", value)
    out = tmp_path / "03_explain.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        kernel_name="python3",
        progress_bar=False,
        parameters={
            "model": store["uri"],
            "where": "month = 2 AND day = 1",
            "n_background": 40,
            "n_explain": 60,
            "row_ids": [0, 4],
        },
    )
    nb = nbformat.read(out, as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # summary, dependence, local figure
    text = json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])
    assert "SHAP and LIME" in text and "carrier" in text


def test_public_api_is_exported():
    import workbench.explain as package

    assert sorted(package.__all__) == sorted(set(package.__all__))
    for name in package.__all__:
        assert getattr(package, name) is not None, name
