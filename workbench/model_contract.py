"""The model contract: what a workbench model is, and the one place its MLflow records are read.

Training writes a model; explain, serving, the gate and drift read it. This module owns what both
sides agree on, so no reader needs `workbench.training` or `mlflow`:

- `ModelSpec`: what a model must be fed (feature function, raw columns, numeric/categorical inputs,
  target, task), stored in the MLmodel `metadata` under `METADATA_KEY`.
- the artifact names logged beside the model: `MODEL_ARTIFACT`, `SCHEMA_ARTIFACT` (the training
  schema, workbench.validation format), `DATA_IDENTITY_ARTIFACT` (what rows it was trained on),
  `SPEC_ARTIFACT`.
- the output contract: `scores` (P(positive) for a classifier, the prediction for a regressor) and
  `compute_metrics`, the metrics training logs and the gate compares.
- the loaders: `load_pyfunc(uri)`, `load_pipeline(uri)`, `model_run_id(uri)`, `run_params(run)`,
  `training_schema(run)`, `data_identity(run)`, and `log_to_run` for results logged back onto a
  model's training run; `score_spark` for batch scoring on Spark.

Every MLflow failure is translated here, once, by `mlflow_errors` (as httpx's `map_exceptions`
does): the caller names what it was doing and which WorkbenchError subclass its users expect; the
message says whether the model was not found or the store failed, and what to do. It never carries
MLflow's own message (that can hold data values), only the exception's class.

    spec = ModelSpec.load("models:/flights-late@champion")
    pyfunc = load_pyfunc("models:/flights-late@champion", settings, error=ServingError)
    X = spec.prepare(raw_pdf, spec.decorator(settings)); scores(pyfunc.get_raw_model(), X, spec.task)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import features as feature_functions
from . import registry
from .config import Settings, load_settings
from .errors import RegistryError, TrainingError, WorkbenchError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from .validation import Schema

__all__ = [
    "ModelSpec",
    "METADATA_KEY",
    "MODEL_ARTIFACT",
    "SCHEMA_ARTIFACT",
    "DATA_IDENTITY_ARTIFACT",
    "SPEC_ARTIFACT",
    "mlflow_errors",
    "load_pyfunc",
    "load_pipeline",
    "model_run_id",
    "run_params",
    "training_schema",
    "data_identity",
    "log_to_run",
    "scores",
    "compute_metrics",
    "score_spark",
]

METADATA_KEY = "workbench"  # the MLmodel metadata key holding the ModelSpec
MODEL_ARTIFACT = "model"  # name of the logged model within its run
SCHEMA_ARTIFACT = "schema.json"  # the training rows' schema (workbench.validation format)
DATA_IDENTITY_ARTIFACT = "data_identity.json"  # dataset, filter, files, content hash, train time range
SPEC_ARTIFACT = "model_spec.json"  # the ModelSpec again, readable in the MLflow UI

# MLflow's error codes for a reference the store does not hold (a missing alias is INVALID_PARAMETER_VALUE)
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
_MODEL_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))?$")


# ---- MLflow's exceptions -> ours, in one place -----------------------------------------------------------
@contextmanager
def mlflow_errors(
    what: str,
    error: type[WorkbenchError] = RegistryError,
    settings: Settings | None = None,
    model_uri: str | None = None,
) -> Iterator[None]:
    """Raise `error` naming `what` failed (and what to do) for any MLflow or store failure inside the block.

    With `model_uri`, a "not found" is told apart: the registry does not know the model, or it does and
    its files are missing from the artifact store. WorkbenchErrors pass through unchanged."""
    try:
        yield
    except WorkbenchError:
        raise
    except Exception as exc:
        raise error(_message(what, exc, settings or load_settings(), model_uri)) from exc


def _message(what: str, exc: Exception, settings: Settings, model_uri: str | None) -> str:
    kind = exc.__class__.__name__
    if getattr(exc, "error_code", None) in _NOT_FOUND:
        if model_uri and _known(model_uri, settings):
            return (
                f"{what}: the registry {settings.registry_uri} holds it, but its files are missing from the artifact "
                f"store {settings.artifacts_uri} ({kind}). Restore the artifacts, or train and register it again."
            )
        return (
            f"{what}: no such model, version, alias or run in the registry {settings.registry_uri} ({kind}). "
            "Check the name and the version or alias with `workbench models list`, or train and register one first."
        )
    return (
        f"{what}: MLflow failed ({kind}). Check that the tracking store {settings.tracking_uri} "
        f"and the artifact store {settings.artifacts_uri} are reachable and hold the model's files."
    )


def _known(model_uri: str, settings: Settings) -> bool:
    """Whether the tracking store or registry knows `model_uri` (asked only to explain a failure)."""
    match = _MODEL_REF.match(model_uri)
    if not match:
        return False
    name, ref = match.group("name"), match.group("alias") or match.group("version")
    try:
        if ref is None:
            return bool(_client(settings).get_logged_model(name))
        registry.get_version(name, ref, settings)
        return True
    except Exception:
        return False


# ---- the spec recorded on every model ---------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What a model needs to be fed: recorded in its MLmodel metadata under "workbench"."""

    feature_function: str
    raw_columns: tuple[str, ...]  # what a caller must send (before decoration)
    numeric: tuple[str, ...]  # model input, double
    categorical: tuple[str, ...]  # model input, string
    target: str
    task: str  # "classification" | "regression"
    label_threshold: float | None = None  # classification: label = target > threshold
    decision_threshold: float = 0.5  # classification: probability cut for precision/recall
    dataset: str = ""
    time_column: str = ""

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_metadata(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    @classmethod
    def from_model(cls, pyfunc_model) -> ModelSpec:
        """The spec of a loaded pyfunc model (`load_pyfunc(...)`)."""
        meta = (pyfunc_model.metadata.metadata or {}).get(METADATA_KEY)
        if not meta:
            raise TrainingError(
                "This MLflow model has no workbench spec in its metadata: it was not logged by "
                "workbench.training. Retrain it with workbench.training.train."
            )
        return cls.from_metadata(meta)

    @classmethod
    def load(cls, model_uri: str, settings: Settings | None = None) -> ModelSpec:
        """The spec of a logged or registered model, without loading the estimator."""
        meta = (_model_info(model_uri, settings).metadata or {}).get(METADATA_KEY)
        if not meta:
            raise TrainingError(
                f"The model {model_uri} has no workbench spec in its metadata; retrain it with workbench.training.train."
            )
        return cls.from_metadata(meta)

    def label(self, target_values: pd.Series) -> pd.Series:
        values = pd.to_numeric(target_values, errors="coerce").astype("float64")
        if self.task == "classification":
            return (values > float(self.label_threshold)).astype("int64")
        return values

    def decorator(self, settings: Settings | None = None, spark=None) -> feature_functions.Decorator:
        return feature_functions.get(self.feature_function).prepare(settings, spark)

    def prepare(
        self, raw: pd.DataFrame, decorator: feature_functions.Decorator | None = None, settings: Settings | None = None
    ) -> pd.DataFrame:
        """Raw rows -> the model's input frame (decorate with the recorded function, select, coerce)."""
        decorator = decorator or self.decorator(settings)
        return feature_functions.model_frame(decorator.apply_pandas(raw), list(self.numeric), list(self.categorical))


# ---- loaders ------------------------------------------------------------------------------------------
def load_pyfunc(model_uri: str, settings: Settings | None = None, *, error: type[WorkbenchError] = RegistryError):
    """The pyfunc model at `model_uri` (`models:/NAME@alias`, `models:/NAME/3`, `models:/m-...`).

    Raises `error` (RegistryError unless the caller names its own) saying what failed and what to do."""
    import mlflow.pyfunc

    settings = settings or load_settings()
    with mlflow_errors(f"Could not load model {model_uri}", error, settings, model_uri):
        registry.configure(settings)
        return mlflow.pyfunc.load_model(model_uri)


def load_pipeline(model_uri: str, settings: Settings | None = None, *, error: type[WorkbenchError] = RegistryError):
    """The scikit-learn Pipeline logged at `model_uri` (no pyfunc wrapper, no signature enforcement)."""
    import mlflow.sklearn

    settings = settings or load_settings()
    with mlflow_errors(f"Could not load the pipeline of model {model_uri}", error, settings, model_uri):
        registry.configure(settings)
        return mlflow.sklearn.load_model(model_uri)


def _model_info(model_uri: str, settings: Settings | None):
    from mlflow.models import get_model_info

    settings = settings or load_settings()
    with mlflow_errors(f"Could not read model {model_uri}", RegistryError, settings, model_uri):
        registry.configure(settings)
        return get_model_info(model_uri)


def model_run_id(model_uri: str, settings: Settings | None = None) -> str | None:
    """The training run behind a logged or registered model (None for a model logged outside a run)."""
    return _model_info(model_uri, settings).run_id or None


def _client(settings: Settings):
    registry.configure(settings)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def run_params(run_id: str, settings: Settings | None = None) -> dict[str, str]:
    """The parameters logged on a run (training logs dataset, train_where, features, ...)."""
    settings = settings or load_settings()
    with mlflow_errors(f"Could not read the parameters of run {run_id}", RegistryError, settings):
        return dict(_client(settings).get_run(run_id).data.params)


def _artifact_text(run_id: str, name: str, settings: Settings) -> str | None:
    """A top-level text artifact of a run, or None when the run has none of that name (an older run)."""
    import mlflow.artifacts

    with mlflow_errors(f"Could not read artifact {name} of run {run_id}", RegistryError, settings):
        names = {a.path for a in _client(settings).list_artifacts(run_id)}
        if name not in names:
            return None
        return mlflow.artifacts.load_text(f"runs:/{run_id}/{name}")


def training_schema(run_id: str, settings: Settings | None = None) -> Schema | None:
    """The schema of the rows a run trained on (`SCHEMA_ARTIFACT`), or None for a run without one."""
    from .validation import Schema

    text = _artifact_text(run_id, SCHEMA_ARTIFACT, settings or load_settings())
    return None if text is None else Schema.from_json(text)


def data_identity(run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """What a run trained on (`DATA_IDENTITY_ARTIFACT`: dataset, filter, files, hashes, train time range); {} if absent."""
    import json

    text = _artifact_text(run_id, DATA_IDENTITY_ARTIFACT, settings or load_settings())
    return {} if text is None else json.loads(text)


def log_to_run(
    run_id: str,
    *,
    texts: dict[str, str] | None = None,
    figures: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    settings: Settings | None = None,
    error: type[WorkbenchError] = RegistryError,
) -> None:
    """Log text artifacts, matplotlib figures and tags onto an existing run (replacing same-named ones)."""
    settings = settings or load_settings()
    with mlflow_errors(f"Could not log to run {run_id}", error, settings):
        client = _client(settings)
        for path, text in (texts or {}).items():
            client.log_text(run_id, text, path)
        for path, fig in (figures or {}).items():
            client.log_figure(run_id, fig, path)
        for key, value in (tags or {}).items():
            client.set_tag(run_id, key, value)


# ---- the output contract ---------------------------------------------------------------------------------
def scores(pipeline, X: pd.DataFrame, task: str) -> np.ndarray:
    """P(positive) for a classifier (column 1 of predict_proba), the prediction for a regressor."""
    return pipeline.predict_proba(X)[:, 1] if task == "classification" else pipeline.predict(X)


def compute_metrics(
    y: pd.Series | np.ndarray, scores: np.ndarray, task: str, decision_threshold: float = 0.5
) -> dict[str, float]:
    """Holdout metrics: AUC, log loss, Brier, precision/recall/F1 at the threshold; or RMSE, MAE, R2."""
    from sklearn import metrics as m

    y = np.asarray(y)
    if len(y) == 0:
        return {}
    if task == "classification":
        predicted = (scores >= decision_threshold).astype(int)
        out = {
            "rows": float(len(y)),
            "positive_rate": float(y.mean()),
            "predicted_positive_rate": float(predicted.mean()),
            "log_loss": float(m.log_loss(y, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1])),
            "brier": float(m.brier_score_loss(y, scores)),
            "precision": float(m.precision_score(y, predicted, zero_division=0)),
            "recall": float(m.recall_score(y, predicted, zero_division=0)),
            "f1": float(m.f1_score(y, predicted, zero_division=0)),
            "accuracy": float(m.accuracy_score(y, predicted)),
        }
        if len(np.unique(y)) == 2:
            out["roc_auc"] = float(m.roc_auc_score(y, scores))
            out["average_precision"] = float(m.average_precision_score(y, scores))
        return out
    return {
        "rows": float(len(y)),
        "rmse": float(np.sqrt(m.mean_squared_error(y, scores))),
        "mae": float(m.mean_absolute_error(y, scores)),
        "r2": float(m.r2_score(y, scores)) if len(y) > 1 else float("nan"),
    }


def score_spark(
    df: DataFrame, model_uri: str, settings: Settings | None = None, output_column: str = "prediction"
) -> DataFrame:
    """Batch scoring on Spark: decorate with the model's recorded feature function, then predict per batch."""
    from pyspark.sql.types import DoubleType, StructField, StructType

    spec = ModelSpec.load(model_uri, settings)
    decorator = spec.decorator(settings, df.sparkSession)
    decorator.check_columns(df.columns)
    pipeline = load_pipeline(model_uri, settings)
    schema = StructType([*df.schema.fields, StructField(output_column, DoubleType(), True)])
    keep = list(df.columns)

    def run(batches):  # decorate and predict in one Python stage per batch
        for batch in batches:
            X = feature_functions.model_frame(decorator.apply_pandas(batch), list(spec.numeric), list(spec.categorical))
            yield batch[keep].assign(**{output_column: scores(pipeline, X, spec.task)})

    return df.mapInPandas(run, schema)
