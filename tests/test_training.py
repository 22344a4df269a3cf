"""Training with real Spark and a real MLflow store (SQLite in a temp dir): the model contract."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from workbench import registry
from workbench.data import load
from workbench.errors import TrainingError
from workbench.model_contract import ModelSpec, score_spark
from workbench.training import train


@pytest.fixture(scope="module")
def champion(trained_model, mlflow_settings):
    registry.configure(mlflow_settings)
    return mlflow.pyfunc.load_model(registry.model_uri(mlflow_settings.model_name, "champion"))


def test_the_champion_predicts_as_in_training(trained_model, champion):
    rows = trained_model.holdout.head(300)
    probabilities = np.asarray(champion.predict(rows))
    assert probabilities.shape == (len(rows), 2)
    np.testing.assert_allclose(probabilities[:, 1], trained_model.holdout_scores[:300], rtol=1e-9)
    assert 0.55 < trained_model.metrics["roc_auc"] < 1.0


def test_the_signature_rejects_a_frame_without_a_model_column(trained_model, champion):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="carrier"):
        champion.predict(trained_model.holdout.head(5).drop(columns=["carrier"]))


def test_the_sklearn_pipeline_comes_out_whole(trained_model, mlflow_settings):
    pipe = mlflow.sklearn.load_model(registry.model_uri(mlflow_settings.model_name, "champion"))
    assert list(pipe.named_steps) == ["preprocess", "model"]
    assert type(pipe.named_steps["model"]).__name__ == "LGBMClassifier"
    names = list(pipe[:-1].get_feature_names_out())
    assert "distance" in names and any(n.startswith("carrier_") for n in names)


def test_the_spec_is_recorded_on_the_model(trained_model, champion, mlflow_settings):
    spec = ModelSpec.from_model(champion)
    assert spec == trained_model.spec
    assert spec.feature_function == "flights_context" and spec.task == "classification" and spec.label_threshold == 15
    assert not set(spec.features) & {"dep_delay", "dep_time", "arr_time", "air_time", "arr_delay"}
    assert ModelSpec.load(registry.model_uri(mlflow_settings.model_name, "champion"), mlflow_settings) == spec
    version = registry.get_version(mlflow_settings.model_name, "champion", mlflow_settings)
    assert version.tags["workbench.feature_function"] == "flights_context"


def test_serving_path_from_raw_rows_matches_batch_scoring(trained_model, champion, spark, mlflow_settings):
    """What serving does (raw rows -> spec.prepare -> pyfunc) equals Spark batch scoring."""
    spec = ModelSpec.from_model(champion)
    raw = load(
        "flights",
        columns=list(spec.raw_columns) + ["flight"],
        where="month = 1 AND day = 30",
        settings=mlflow_settings,
        spark=spark,
    )
    batch = score_spark(raw, registry.model_uri(mlflow_settings.model_name, "champion"), mlflow_settings).toPandas()
    online = np.asarray(champion.predict(spec.prepare(batch[list(spec.raw_columns)], settings=mlflow_settings)))[:, 1]
    np.testing.assert_allclose(online, batch["prediction"].to_numpy(), rtol=1e-9)


def test_the_run_records_data_metrics_and_artifacts(trained_model, mlflow_settings):
    client = registry.configure(mlflow_settings)
    run = client.get_run(trained_model.run_id)
    assert run.data.params["train_where"] == "month = 1" and run.data.params["model"] == "lightgbm"
    assert {"roc_auc", "log_loss", "precision", "recall", "rows_dropped_null_target"} <= set(run.data.metrics)
    assert run.data.metrics["rows_dropped_null_target"] > 0  # cancelled flights were dropped
    assert (
        len(run.data.tags["mlflow.source.git.commit"]) in (40, 7)
        or run.data.tags["mlflow.source.git.commit"] == "unknown"
    )
    artifacts = {a.path for a in client.list_artifacts(trained_model.run_id)} | {
        a.path for a in client.list_artifacts(trained_model.run_id, "charts")
    }
    assert {
        "schema.json",
        "data_identity.json",
        "feature_importance.csv",
        "model_spec.json",
        "charts/roc.png",
        "charts/pr.png",
        "charts/confusion.png",
    } <= artifacts
    identity = json.loads(open(client.download_artifacts(trained_model.run_id, "data_identity.json")).read())
    assert (
        identity["rows_train"] + identity["rows_holdout"]
        == identity["rows_loaded"] - identity["rows_dropped_null_target"]
    )
    assert identity["train_time_range"][1] <= identity["holdout_time_range"][0]  # time-ordered holdout
    assert identity["parquet_files"] and len(identity["content_sha256"]) == 64
    schema = json.loads(open(client.download_artifacts(trained_model.run_id, "schema.json")).read())
    assert {c["name"] for c in schema["columns"]} >= set(trained_model.spec.features)


def test_leaky_features_and_unknown_models_are_refused(mlflow_settings):
    with pytest.raises(TrainingError, match="dep_delay"):
        train("flights", features=["carrier", "dep_delay"], settings=mlflow_settings)
    with pytest.raises(TrainingError, match="lightgbm, logistic"):
        train("flights", model="xgboost", settings=mlflow_settings)
    with pytest.raises(TrainingError, match="linear"):
        train("flights", model="logistic", task="regression", settings=mlflow_settings)


@pytest.mark.parametrize(
    "notebook, required",
    [
        ("02_train", {"dataset", "target", "features", "train_where", "model", "params"}),
        ("05_evaluate", {"eval_where", "slices", "tolerance", "floor", "promote"}),
    ],
)
def test_notebook_parameters_parse_without_a_kernel(notebook, required):
    """papermill must see every parameter (it skips lines with a second '=', e.g. in a SQL predicate)."""
    import ast
    from pathlib import Path

    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(Path(__file__).resolve().parent.parent / "notebooks" / f"{notebook}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = {t.id for node in ast.parse(cell.source).body for t in node.targets}
    assert {p.name for p in PythonTranslator.inspect(cell)} == assigned
    assert required <= assigned
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert "def " not in "".join(c.source for c in nb.cells if c.cell_type == "code")


def test_lineage_lists_the_files_read(trained_model):
    files = trained_model.data_identity["parquet_files"]
    assert files and all("month=1/" in f for f in files)  # partition pruning: the other months' files were not read
