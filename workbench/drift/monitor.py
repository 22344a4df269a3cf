"""Monitoring a model in production: the two windows, with the model's view of them.

`load_windows` reads the reference and current windows of a dataset (through `workbench.data.load`),
and, when a registered model is given, decorates them with the model's recorded feature function,
adds the label (`spec.target > spec.label_threshold`) and scores them on Spark
(`workbench.model_contract.score_spark`). With `predictions=True` the current window is the serving
wrapper's prediction log instead, joined to labels that arrived later.

The prediction log (written by the serving wrapper, `workbench.serving.predlog`, as parquet under
`<predictions_dir>/<model>/date=YYYY-MM-DD/`) is read per model and for a range of serving days
(`load_prediction_log`: only those days' folders are listed to Spark, only the compared columns read). It has
the columns PREDICTION_LOG_COLUMNS, plus `date` (the partition), `shadow` (rows scored by a shadow model,
left out by default) and the model's input columns:

    request_id     string     one per request
    entity_id      string     what was scored; equals `entity_key` evaluated on the dataset's rows
    prediction     double     the score (P(positive) for a classifier)
    model_version  string     registered version that answered
    variant        string     champion / challenger (A/B)
    timestamp      timestamp  when it answered (UTC)
    <features>                the model's input columns, as sent to the model

Labels are joined on entity_id: one label per entity (the largest target if the dataset has several
rows for one entity); a prediction whose label has not arrived yet counts for drift, not performance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from ..config import Settings, load_settings
from ..errors import DriftError
from ..reports.artifacts import show_html  # Evidently's HTML, shown from the run's folder
from ..runs.layout import RUN_DIR_ENV, artifact_dir  # the job runner names the run's folder in RUN_DIR_ENV
from .prediction_log import PREDICTION_LOG_COLUMNS, load_prediction_log
from .report import Thresholds
from .stats import split_features

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = [
    "PREDICTION_LOG_COLUMNS",
    "LABEL",
    "PREDICTION",
    "RUN_DIR_ENV",
    "Windows",
    "load_windows",
    "load_prediction_log",
    "join_labels",
    "data_quality",
    "Performance",
    "binary_performance",
    "performance_status",
    "artifact_dir",
    "PerformanceDrift",
    "prediction_drift",
    "performance_drift",
    "window_explanation_drift",
    "show_html",
]

LABEL = "label"
PREDICTION = "prediction"
PURPOSE = "drift monitoring"


# ---- the windows -----------------------------------------------------------------------------------
@dataclass
class Windows:
    """Reference and current window, with the columns to compare and, for a model, its view of them."""

    reference: DataFrame
    current: DataFrame
    numerical: list[str]
    categorical: list[str]
    source: str = "dataset"  # "dataset" | "prediction log"
    model_uri: str | None = None
    spec: Any = None  # workbench.model_contract.ModelSpec
    version: Any = None  # workbench.registry.ModelVersionInfo, for a registered model
    label: str | None = None  # column with the label (1/0, or the target for regression)
    prediction: str | None = None  # column with the model's score
    persisted: list = field(default_factory=list, repr=False)

    @property
    def features(self) -> list[str]:
        return self.numerical + self.categorical

    @property
    def training_metrics(self) -> dict[str, float]:
        return dict(self.version.metrics) if self.version is not None else {}

    def release(self) -> None:
        """Drop the cached scored windows."""
        for df in self.persisted:
            df.unpersist()
        self.persisted.clear()


def load_windows(
    dataset: str,
    reference_where: str | None,
    current_where: str | None,
    features: Sequence[str] | None = None,
    model: str | None = None,
    predictions: bool = False,
    entity_key: str | None = None,
    categorical: Sequence[str] | None = None,
    settings: Settings | None = None,
    spark=None,
    prediction_dates: str | Sequence[str | None] | None = None,
    prediction_model: str | None = None,
) -> Windows:
    """The two windows to compare.

    features: columns to compare (default: the model's input columns; without a model, the dataset's
    target, features and leaky columns from its roles in the catalog, else its derived features). model: a model URI
    (`models:/NAME@ALIAS`, `models:/NAME/VERSION` or a logged `models:/m-...`) whose predictions and
    performance are monitored too. predictions: take the current window from the prediction log
    (`current_where` then filters the log); `entity_key` is the Spark SQL expression on `dataset`
    whose value is the log's entity_id (default: the columns of the `entity_id` role joined by '-').
    categorical: numeric columns to treat as categories. dataset "" means the catalog's default_dataset;
    a window None or "" means the dataset's `windows: reference` / `windows: current` role (an error
    naming the parameter without one; with `predictions`, an unset current_where takes the whole log).
    prediction_dates (with `predictions`): the serving days of the log to read, "YYYY-MM-DD" or [first, last]
    (UTC, inclusive; `load_prediction_log`); other days' files are never opened, and only the compared columns
    (and the model's raw inputs, for explanation drift) are read. prediction_model: whose log (default: the
    `model`'s name, else the `model_name` setting, else `<dataset>-<target name>`).
    """
    from ..data import load
    from ..spark import get_spark
    from ..task import default_model_name, resolve_dataset, window

    settings = settings or load_settings()
    dataset = resolve_dataset(dataset, settings, DriftError)
    reference_where = window(dataset, "reference", reference_where, settings, DriftError)
    if not predictions:  # the prediction log's window is the whole log unless current_where narrows it
        current_where = window(dataset, "current", current_where, settings, DriftError)
    spark = spark or get_spark(settings=settings)
    spec = version = None
    if model:
        spec, version = _model(model, settings)
    wanted = list(features or (spec.features if spec else []))
    if not wanted:
        wanted = _catalog_columns(dataset, settings)
    if not wanted:
        raise DriftError(
            "no features to compare: pass `features` (column names), or a `model` whose input columns are used, "
            f"or declare 'target' and 'features' under datasets.{dataset}.roles in the catalog."
        )
    if predictions and not entity_key:
        entity_key = entity_key_of(dataset, settings)

    reference = load(dataset, where=reference_where or None, purpose=PURPOSE, settings=settings, spark=spark)
    if predictions:
        logged = bool(model) and model.startswith("models:/") and model[8:].lstrip("/").startswith("m-")
        name = prediction_model or (
            model if model and not logged else default_model_name(dataset, settings, DriftError)
        )
        log_columns = list(dict.fromkeys([*wanted, *(spec.raw_columns if spec else [])]))
        current = load_prediction_log(settings, where=current_where, spark=spark, model=name, dates=prediction_dates)
        _require_columns(wanted, current, "the prediction log")
        fixed = [*PREDICTION_LOG_COLUMNS, "date"]
        current = current.select(
            *[c for c in current.columns if c in fixed or c in log_columns]
        )  # the rest is never read
    else:
        current = load(dataset, where=current_where or None, purpose=PURPOSE, settings=settings, spark=spark)

    windows = Windows(
        reference,
        current,
        [],
        [],
        source="prediction log" if predictions else "dataset",
        model_uri=model or None,
        spec=spec,
        version=version,
    )
    if spec is not None:
        # score the raw rows, then decorate: Decorator.apply_spark on an already decorated frame drops
        # the columns it adds, so the two cannot be chained the other way round
        windows.reference = _decorate(_score(_labelled(reference, spec), model, settings), spec, settings, spark)
        windows.label, windows.prediction = LABEL, PREDICTION
        if predictions:
            if not entity_key:
                raise DriftError(
                    "predictions = True needs `entity_key`: the Spark SQL expression on the dataset that equals the log's entity_id. "
                    f"Pass it, or declare 'entity_id' under datasets.{dataset}.roles in the catalog."
                )
            labels = load(dataset, purpose=PURPOSE, settings=settings, spark=spark)
            windows.current = join_labels(current, labels, entity_key, spec.target, spec.label_threshold)
        else:
            windows.current = _decorate(_score(_labelled(current, spec), model, settings), spec, settings, spark)
        for df in (windows.reference, windows.current):
            df.persist()
            windows.persisted.append(df)
    elif predictions:
        windows.prediction = PREDICTION if PREDICTION in current.columns else None

    _require_columns(wanted, windows.current, "the prediction log" if predictions else "the current window")
    windows.numerical, windows.categorical = split_features(
        windows.reference, wanted, categorical=[c for c in (categorical or []) if c in wanted]
    )
    return windows


def _require_columns(wanted: Sequence[str], df: DataFrame, where: str) -> None:
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DriftError(f"feature(s) {', '.join(missing)} not in {where}. Its columns: {', '.join(df.columns)}.")


def _catalog_columns(dataset: str, settings: Settings) -> list[str]:
    """Without a model: the target, the features that are columns of the dataset, and the leaky columns."""
    from ..data.roles import NOT_FEATURE_TYPES, derived_features
    from ..task import dataset_entry

    entry = dataset_entry(dataset, settings)
    roles, types = entry.roles, {c.name: c.type for c in entry.columns}
    first = [roles.target.column] if roles.target else []
    wanted = [*first, *derived_features(entry), *roles.leaky]
    return [c for c in dict.fromkeys(wanted) if c in types and types[c] not in NOT_FEATURE_TYPES]


def entity_key_of(dataset: str, settings: Settings | None = None) -> str:
    """The Spark SQL expression equal to the prediction log's entity_id: the `entity_id` role's columns joined by '-'."""
    from ..task import dataset_entry

    columns = dataset_entry(dataset, settings or load_settings()).roles.entity_id
    if not columns:
        return ""
    return columns[0] if len(columns) == 1 else "concat_ws('-', " + ", ".join(columns) + ")"


def join_labels(
    log: DataFrame, labels: DataFrame, entity_key: str, target: str, label_threshold: float | None
) -> DataFrame:
    """The log with a LABEL column: `target > label_threshold` (or the target itself when None) of the
    dataset row whose `entity_key` equals the log's entity_id; null while the label has not arrived."""
    from pyspark.sql import functions as F

    if target not in labels.columns:
        raise DriftError(f"the dataset has no column '{target}' (the model's target) to take labels from.")
    try:
        keyed = labels.select(
            F.expr(entity_key).cast("string").alias("entity_id"), F.col(target).cast("double").alias("__target")
        )
    except Exception as exc:
        raise DriftError(
            f"entity_key is not a valid Spark SQL expression on the dataset ({exc.__class__.__name__}). "
            "Use column names of the dataset, e.g. concat_ws('-', id_column, time_column)."
        ) from exc
    truth = (
        keyed.where(F.col("entity_id").isNotNull() & F.col("__target").isNotNull())
        .groupBy("entity_id")
        .agg(F.max("__target").alias("__target"))
    )
    label = (
        (F.col("__target") > F.lit(float(label_threshold))).cast("int")
        if label_threshold is not None
        else F.col("__target")
    )
    return (
        log.withColumn("entity_id", F.col("entity_id").cast("string"))
        .join(truth, "entity_id", "left")
        .withColumn(LABEL, F.when(F.col("__target").isNotNull(), label))
        .drop("__target")
    )


def _model(model: str, settings: Settings):
    from .. import registry
    from ..model_contract import ModelSpec

    spec = ModelSpec.load(model, settings)
    version = None
    path = urlparse(model).netloc + urlparse(model).path if model.startswith("models:/") else ""
    path = path.lstrip("/")
    if path and not path.startswith("m-"):
        name, _, ref = path.partition("@") if "@" in path else path.partition("/")
        if name and ref:
            version = registry.get_version(name, int(ref) if ref.isdigit() else ref, settings)
    return spec, version


def _decorate(df: DataFrame, spec, settings: Settings, spark) -> DataFrame:
    return spec.decorator(settings, spark).apply_spark(df)


def _labelled(df: DataFrame, spec) -> DataFrame:
    from pyspark.sql import functions as F

    if spec.target not in df.columns:
        return df
    y = F.col(spec.target).cast("double")
    label = (y > F.lit(float(spec.label_threshold))).cast("int") if spec.task == "classification" else y
    return df.withColumn(LABEL, F.when(y.isNotNull(), label))


def _score(df: DataFrame, model: str, settings: Settings) -> DataFrame:
    from ..model_contract import score_spark

    return score_spark(df, model, settings, output_column=PREDICTION)


# ---- data quality ------------------------------------------------------------------------------------
def data_quality(
    windows: Windows, schema_path: str | None = None, settings: Settings | None = None
) -> tuple[str, pd.DataFrame]:
    """(where the schema came from, anomalies of the current window's features as a table).

    The schema is, in order: the JSON file `schema_path`; the model's training schema (`schema.json`
    logged with its run); else one inferred from the reference window.
    """
    import pandas as pd

    from .. import validation

    schema, source = None, ""
    if schema_path:
        schema, source = validation.Schema.load(schema_path), f"file {Path(schema_path).name}"
    elif windows.version is not None and windows.version.run_id:
        schema = _training_schema(windows.version.run_id, settings)
        source = f"training schema of {windows.version.name} v{windows.version.version}" if schema else ""
    if schema is None:
        schema = validation.infer_schema(windows.reference.select(*windows.features), name="reference window")
        source = "inferred from the reference window"
    checked = validation.Schema({k: v for k, v in schema.columns.items() if k in windows.features}, name=schema.name)
    anomalies = validation.validate(windows.current.select(*windows.features), checked, allow_extra_columns=True)
    table = pd.DataFrame([asdict(a) for a in anomalies], columns=["column", "kind", "description", "count", "fraction"])
    return source, table


def _training_schema(run_id: str, settings: Settings | None):
    from ..model_contract import training_schema

    return training_schema(run_id, settings)  # None for an older run without a logged schema


# ---- performance -------------------------------------------------------------------------------------
@dataclass
class Performance:
    """Binary-classification quality of scores against labels, from one Spark aggregation."""

    rows: int
    auc: float | None
    positive_rate: float
    mean_score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def binary_performance(df: DataFrame, score: str, label: str, decimals: int = 4) -> Performance:
    """AUC from a histogram of scores per class (scores rounded to `decimals`; ties count half),
    so it runs in one aggregation at any size. Rows without a label or a score are left out."""
    from pyspark.sql import functions as F

    for c in (score, label):
        if c not in df.columns:
            raise DriftError(f"column '{c}' not in the data. Its columns: {', '.join(df.columns)}.")
    y = F.col(label).cast("double")
    s = F.col(score).cast("double")
    data = df.where(y.isNotNull() & s.isNotNull() & ~F.isnan(s))
    hist = (
        data.groupBy(F.round(s, decimals).alias("s"))
        .agg(
            F.sum(F.when(y > 0, 1).otherwise(0)).alias("pos"),
            F.sum(F.when(y > 0, 0).otherwise(1)).alias("neg"),
            F.sum(s).alias("sum"),
        )
        .orderBy("s")
        .toPandas()
    )
    if hist.empty:
        raise DriftError(f"no rows with both '{score}' and '{label}' to measure performance on.")
    pos, neg = hist["pos"].to_numpy(float), hist["neg"].to_numpy(float)
    n_pos, n_neg = pos.sum(), neg.sum()
    auc = None
    if n_pos and n_neg:
        neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
        auc = float(np.sum(pos * (neg_below + 0.5 * neg)) / (n_pos * n_neg))
    rows = int(n_pos + n_neg)
    return Performance(rows, auc, float(n_pos / rows), float(hist["sum"].sum() / rows))


def performance_status(baseline_auc: float | None, current_auc: float | None, thresholds: Thresholds) -> str:
    """`warn`/`alert` when AUC dropped from the baseline by at least the thresholds; `ok` when fine or unknown."""
    if baseline_auc is None or current_auc is None or math.isnan(baseline_auc) or math.isnan(current_auc):
        return "ok"
    drop = baseline_auc - current_auc
    return "alert" if drop >= thresholds.auc_drop_alert else "warn" if drop >= thresholds.auc_drop_warn else "ok"


@dataclass
class PerformanceDrift:
    """AUC at training (from the registry), on the reference and on the current window, and the status."""

    table: pd.DataFrame
    status: str
    baseline: str  # which AUC the current one is compared with
    metrics: dict[str, float]


def prediction_drift(windows: Windows, thresholds: Thresholds | Mapping[str, Any] | None = None):
    """Drift of the model's score between the windows (a DriftReport on one column), or None without one."""
    from .stats import compute_drift

    if not windows.prediction or windows.prediction not in windows.reference.columns:
        return None
    return compute_drift(
        windows.reference, windows.current, [windows.prediction], numerical=[windows.prediction], thresholds=thresholds
    )


def performance_drift(
    windows: Windows, thresholds: Thresholds | Mapping[str, Any] | None = None
) -> PerformanceDrift | None:
    """AUC now vs at training (or vs the reference window when the registry has no training AUC);
    None without a classifier or labels."""
    import pandas as pd

    thresholds = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_dict(thresholds)
    if not windows.label or not windows.prediction or windows.spec is None or windows.spec.task != "classification":
        return None
    rows, metrics = [], {}
    training_auc = windows.training_metrics.get("roc_auc")
    if training_auc is not None:
        rows.append(
            {
                "window": "training holdout",
                "rows": None,
                "auc": training_auc,
                "positive_rate": windows.training_metrics.get("positive_rate"),
                "mean_score": None,
            }
        )
        metrics["model.auc_training"] = float(training_auc)
    for name, df in (("reference", windows.reference), ("current", windows.current)):
        if windows.prediction in df.columns and windows.label in df.columns:
            perf = binary_performance(df, windows.prediction, windows.label)
            rows.append({"window": name, **perf.to_dict()})
            if perf.auc is not None:
                metrics[f"model.auc_{name}"] = perf.auc
            metrics[f"model.positive_rate_{name}"] = perf.positive_rate
    baseline = "training holdout" if training_auc is not None else "reference"
    base_auc = metrics.get("model.auc_training", metrics.get("model.auc_reference"))
    status = performance_status(base_auc, metrics.get("model.auc_current"), thresholds)
    if base_auc is not None and "model.auc_current" in metrics:
        metrics["model.auc_drop"] = base_auc - metrics["model.auc_current"]
    return PerformanceDrift(
        pd.DataFrame(rows, columns=["window", "rows", "auc", "positive_rate", "mean_score"]), status, baseline, metrics
    )


# ---- explanation drift -------------------------------------------------------------------------------
def window_explanation_drift(
    windows: Windows, rows: int = 1000, settings: Settings | None = None
) -> pd.DataFrame | None:
    """Explanation drift of the model between the windows: mean |SHAP| per feature on bounded samples
    of raw rows, features whose influence moved most first (`workbench.explain.attribution_drift`).

    None when there is no model, or when the current window lacks the raw columns the explainer
    decorates (a prediction log carries model inputs). `workbench.explain` computes the attributions;
    drift only asks.
    """
    from .stats import sample_windows

    if windows.model_uri is None or windows.spec is None:
        return None
    from ..explain import attribution_drift

    columns = list(windows.spec.raw_columns)
    if any(c not in windows.reference.columns or c not in windows.current.columns for c in columns):
        return None
    ref, cur = sample_windows(windows.reference, windows.current, rows, columns=columns)
    return attribution_drift(windows.model_uri, ref, cur, settings=settings)
