"""The model contract over a real MLflow store (SQLite + artifacts in tmp_path): loaders and error translation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression

from workbench import model_contract, registry
from workbench.errors import RegistryError, ServingError
from workbench.estimators import build_pipeline
from workbench.model_contract import METADATA_KEY, ModelSpec
from workbench.validation import infer_schema

SPEC = ModelSpec(
    feature_function="none",
    raw_columns=("x", "kind"),
    numeric=("x",),
    categorical=("kind",),
    target="y",
    task="classification",
    label_threshold=0.5,
)


@pytest.fixture
def store(repo_settings, tmp_path):
    """A throw-away store holding one run with a small model logged the way training logs it."""
    settings = repo_settings.with_overrides(
        mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", mlflow_artifacts=str(tmp_path / "mlartifacts")
    )
    client = registry.configure(settings)
    experiment = client.create_experiment("contract", artifact_location=f"{settings.artifacts_uri}/contract")
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=200), "kind": rng.choice(["a", "b"], size=200).astype(object)})
    y = (X["x"] > 0).astype(int)
    pipeline = build_pipeline(["x"], ["kind"], LogisticRegression()).fit(X, y)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_params({"dataset": "toy", "train_where": "x > -9"})
        mlflow.log_text(infer_schema(X).to_json(), model_contract.SCHEMA_ARTIFACT)
        mlflow.log_dict({"train_time_range": ["1", "2"]}, model_contract.DATA_IDENTITY_ARTIFACT)
        info = mlflow.sklearn.log_model(
            pipeline,
            name=model_contract.MODEL_ARTIFACT,
            pyfunc_predict_fn="predict_proba",
            serialization_format="skops",
            skops_trusted_types=sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))),
            metadata={METADATA_KEY: SPEC.to_metadata()},
        )
    with mlflow.start_run(experiment_id=experiment) as bare:
        mlflow.log_param("dataset", "toy")
    registry.register(info.model_uri, "contract-model", alias="champion", settings=settings)
    return {"settings": settings, "uri": info.model_uri, "run": run.info.run_id, "bare": bare.info.run_id, "X": X}


def test_a_model_reads_back_through_the_contract(store):
    settings = store["settings"]
    pyfunc = model_contract.load_pyfunc("models:/contract-model@champion", settings)
    assert ModelSpec.from_model(pyfunc) == SPEC == ModelSpec.load("models:/contract-model/1", settings)
    pipeline = model_contract.load_pipeline(store["uri"], settings)
    X = store["X"].head(20)
    np.testing.assert_allclose(
        model_contract.scores(pipeline, X, SPEC.task), np.asarray(pyfunc.predict(X))[:, 1], rtol=0, atol=1e-12
    )
    assert model_contract.model_run_id(store["uri"], settings) == store["run"]
    assert model_contract.run_params(store["run"], settings)["train_where"] == "x > -9"
    assert set(model_contract.training_schema(store["run"], settings).columns) == {"x", "kind"}
    assert model_contract.data_identity(store["run"], settings) == {"train_time_range": ["1", "2"]}


def test_a_run_without_the_artifacts_gives_none_not_an_error(store):
    settings = store["settings"]
    assert model_contract.training_schema(store["bare"], settings) is None
    assert model_contract.data_identity(store["bare"], settings) == {}


def test_a_missing_model_gives_our_error_saying_what_to_do(store):
    settings = store["settings"]
    for uri in ("models:/no-such-model/1", "models:/contract-model@nope", "models:/contract-model/7"):
        with pytest.raises(RegistryError) as caught:
            model_contract.load_pyfunc(uri, settings)
        message = str(caught.value)
        assert f"Could not load model {uri}: no such model, version, alias or run" in message
        assert "workbench models list" in message and settings.registry_uri in message
    with pytest.raises(ServingError, match="no such model"):  # the caller picks the error its users expect
        model_contract.load_pyfunc("models:/no-such-model/1", settings, error=ServingError)
    with pytest.raises(RegistryError, match="Could not read model models:/no-such-model/1"):
        ModelSpec.load("models:/no-such-model/1", settings)


def test_a_store_fault_is_named_as_such(store):
    """The model's files are gone from the artifact store: the message points at the stores, not the name."""
    settings = store["settings"]
    shutil.rmtree(Path(settings.mlflow_artifacts) / "contract")
    with pytest.raises(RegistryError) as caught:
        model_contract.load_pyfunc("models:/contract-model@champion", settings)
    message = str(caught.value)
    assert "holds it, but its files are missing from the artifact store" in message
    assert settings.artifacts_uri in message and "Restore the artifacts" in message
    assert caught.value.__cause__ is not None  # the original exception stays attached for debugging
    assert json.dumps(SPEC.to_metadata()) not in message


def test_only_the_contract_registry_and_training_import_mlflow():
    """Readers (explain, serving, gate, drift) go through the contract; training imports mlflow to log."""
    import ast

    import workbench

    package = Path(workbench.__file__).parent
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                importers.add(path.relative_to(package).as_posix())
    assert importers == {"model_contract.py", "registry.py", "training.py"}
