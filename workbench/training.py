"""Training: one scikit-learn Pipeline (preprocessing + estimator) logged as ONE MLflow model.

THE MODEL CONTRACT (explain, serving, drift and the gate rely on it; `workbench.model_contract` owns
`ModelSpec`, the artifact names and the loaders, so readers never import this module)
--------------------------------------------------------------------
1. Train (e.g. in a test fixture, against a throw-away MLflow store in SQLite):

       settings = repo_settings.with_overrides(
           mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", mlflow_artifacts=str(tmp_path / "mlartifacts"))
       result = workbench.training.train(
           "flights", train_where="month = 1", params={"n_estimators": 20},
           register=True, alias="champion", settings=settings, spark=spark)
       result.model_uri      # 'models:/m-...'   (the logged model)
       result.version        # 1                 (registered as NAME, here with @champion)

   Target, task, features, feature function and time column default to the dataset's roles in the
   catalog (`workbench.task.resolve_task`); NAME to the model_name setting, else `<dataset>-<target name>`.

2. Load it by alias: `models:/NAME@champion` (`workbench.registry.model_uri(name, "champion")` builds it). Call `workbench.registry.configure(settings)`
   first so MLflow looks in the right store.

       pyfunc  = model_contract.load_pyfunc("models:/NAME@champion")    # enforces the signature
       pipe    = model_contract.load_pipeline("models:/NAME@champion")  # the sklearn Pipeline:
       pipe.named_steps["preprocess"]   # ColumnTransformer (numeric: impute+scale; categorical: impute+one-hot)
       pipe.named_steps["model"]        # LGBMClassifier / LogisticRegression / LGBMRegressor / Ridge
       pipe[:-1].get_feature_names_out()   # names of the columns the estimator sees (pandas output)

3. Columns: the pipeline (and the pyfunc signature) expects exactly the model's *decorated* feature
   columns, `spec.numeric + spec.categorical`: numeric as double, categorical as string (nulls allowed).
   For a classifier the pyfunc returns `predict_proba` (column 1 = probability of the positive class,
   as the catalog's roles describe it); a regressor returns predictions.

4. The feature function is recorded ON the model: `ModelSpec` (feature function name, the raw
   columns it needs, numeric/categorical columns, target, task, label threshold) is stored in the
   MLmodel `metadata` under "workbench" and copied into the run's params/tags and the version's tags
   (`workbench.feature_function`). Serving (and batch scoring) does:

       spec = ModelSpec.from_model(pyfunc)         # or ModelSpec.load(model_uri)
       deco = spec.decorator(settings)             # workbench.features.get(spec.feature_function).prepare(...)
       X = spec.prepare(raw_pdf, deco)             # decorate, then select + coerce (features.model_frame)
       pyfunc.predict(X)

   `raw_pdf` needs `spec.raw_columns` (the feature function's `requires` + raw features it does not add).
   On Spark: `model_contract.score_spark(df, model_uri)` decorates and predicts per batch with `mapInPandas`
   (`deco.apply_spark(df)` alone gives the decorated Spark DataFrame).

Why skops, not cloudpickle: MLflow 3.17 saves sklearn models with skops by default, which only
rebuilds types on an allow-list instead of executing arbitrary pickled code. Our pipeline holds only
sklearn, numpy and LightGBM types (the feature function lives outside the pipeline, by name), so we
keep skops and trust exactly `TRUSTED_TYPES`; `_trusted_types` refuses to log a pipeline that needs
anything else rather than silently widening the list.

Leakage: the columns a dataset's roles declare `leaky` (known only after the fact) are not in the
derived features, and `train` refuses them unless `allow_leaky=True` (for a target they do not leak).
Rows with a null target are dropped and counted (`rows_dropped_null_target`). The holdout is
time-ordered: the last `holdout_fraction` of rows by `time_column`, never a random split; a holdout
whose time range overlaps training's (a coarse time column) is reported in `TrainResult.warnings`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import features as feature_functions
from . import registry
from .config import Settings, load_settings
from .errors import TrainingError
from .estimators import ESTIMATORS, build_pipeline, feature_importance
from .model_contract import (
    DATA_IDENTITY_ARTIFACT,
    METADATA_KEY,
    MODEL_ARTIFACT,
    SCHEMA_ARTIFACT,
    SPEC_ARTIFACT,
    ModelSpec,
    compute_metrics,
)
from .model_contract import scores as _scores
from .runs.provenance import git_state
from .task import resolve_task, window

__all__ = [
    "TrainResult",
    "train",
    "charts",
    "TRUSTED_TYPES",
]

# Types skops must rebuild beyond its defaults for our pipelines (see the module docstring).
TRUSTED_TYPES: tuple[str, ...] = (
    "collections.OrderedDict",
    "numpy.dtype",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
)


@dataclass
class TrainResult:
    run_id: str
    model_uri: str  # models:/m-... (the logged model)
    spec: ModelSpec
    metrics: dict[str, float]
    pipeline: Any
    holdout: pd.DataFrame  # the holdout's model input (decorated, coerced)
    holdout_label: pd.Series
    holdout_scores: np.ndarray  # P(positive) for classification, predictions for regression
    data_identity: dict[str, Any] = field(default_factory=dict)
    version: int | None = None  # registered version, when register=True
    name: str | None = None
    description: str = ""  # the prediction in words, from the catalog's roles ("" when none)
    warnings: list[str] = field(default_factory=list)  # e.g. a holdout overlapping training's time range

    @property
    def registered_uri(self) -> str | None:
        return registry.model_uri(self.name, self.version) if self.version else None


# ---- training ----------------------------------------------------------------------------------------------
def train(
    dataset: str,
    target: str = "",
    features: list[str] | tuple[str, ...] | None = None,
    feature_function: str = "",
    train_where: str | None = None,
    model: str = "lightgbm",
    params: dict[str, Any] | None = None,
    label_threshold: float | None = None,
    decision_threshold: float = 0.5,
    time_column: str = "",
    holdout_fraction: float = 0.2,
    categorical: list[str] | None = None,
    allow_leaky: bool = False,
    register: bool = False,
    name: str | None = None,
    alias: str | None = None,
    run_name: str | None = None,
    task: str = "",
    settings: Settings | None = None,
    spark=None,
) -> TrainResult:
    """Train and log one model; optionally register it (and point `alias` at the new version).

    dataset/train_where: what to read (through workbench.data.load; `train_where` is a Spark SQL predicate;
    "" for dataset means the catalog's default_dataset, None or "" for train_where its `windows: train`
    role, else all rows, split by time for the holdout). Unset parameters come from the dataset's roles in the catalog (`workbench.task.resolve_task`):
    target, task (classification of `target > label_threshold`, a 0/1 target needing no threshold, or
    regression), features (after decoration by `feature_function`), time_column.
    categorical: feature columns to one-hot (default: string columns). model: a key of ESTIMATORS;
    params: its hyperparameters. name: the registered name (default: the model_name setting, else
    `<dataset>-<target name>`).
    """
    import mlflow

    settings = settings or load_settings()
    params = dict(params or {})
    resolved = resolve_task(dataset, target, task, label_threshold, features, feature_function, time_column, settings)
    dataset, train_where = resolved.dataset, window(resolved.dataset, "train", train_where, settings, TrainingError)
    target, task, label_threshold = resolved.target, resolved.task, resolved.label_threshold
    feature_function, time_column = resolved.feature_function, resolved.time_column
    name = name or settings.model_name or resolved.model_name
    if model not in ESTIMATORS or task not in ESTIMATORS[model]:
        fits = [n for n, tasks in ESTIMATORS.items() if task in tasks]
        raise TrainingError(
            f"Parameter 'model' is '{model}', which has no {task} estimator. Choose one of: {', '.join(fits)}."
        )
    if not 0 < holdout_fraction < 1:
        raise TrainingError(
            f"Parameter 'holdout_fraction' must be between 0 and 1 (exclusive); found {holdout_fraction}."
        )
    features = list(resolved.features)
    leaky = [c for c in features if c in resolved.leaky]
    if leaky and not allow_leaky:
        raise TrainingError(
            f"Feature(s) {', '.join(leaky)} are declared leaky for dataset '{dataset}' (catalog roles: leaky): known "
            "only after the fact, they leak the answer. Remove them from `features`, or pass allow_leaky=True "
            "if your target is not one they reveal."
        )
    if target in features:
        raise TrainingError(f"The target '{target}' is also listed in `features`; remove it from `features`.")

    from .data import load
    from .spark import get_spark

    spark = spark or get_spark(settings=settings)
    function = feature_functions.get(feature_function)
    raw_features = [c for c in features if c not in function.adds]
    raw_columns = list(dict.fromkeys([*function.requires, *raw_features]))
    wanted = list(dict.fromkeys([*raw_columns, target, time_column]))

    clock = _Clock()
    df = load(
        dataset,
        columns=wanted,
        where=train_where,
        purpose=f"training {name}",
        settings=settings,
        spark=spark,
    )
    files = _files_read(df)
    # The training rows end up in pandas anyway (scikit-learn fits in memory), so read them in one Spark
    # job and decorate on the driver with the same pandas function that mapInPandas runs for batch scoring.
    raw = df.toPandas()
    rows_loaded = len(raw)
    raw = raw[raw[target].notna()].reset_index(drop=True)
    rows_kept = len(raw)
    if rows_kept < 10:
        raise TrainingError(
            f"Only {rows_kept} row(s) of '{dataset}' have a '{target}' under train_where; widen train_where."
        )
    if resolved.zero_one and not raw[target].isin([0, 1, True, False]).all():
        raise TrainingError(
            f"The target '{target}' is binary with no 'positive' rule, so it must hold only 0 and 1, and it holds other "
            f"values. Pass label_threshold (positive when {target} > it), or add 'positive: \"> NUMBER\"' under "
            f"datasets.{dataset}.roles.target in the catalog."
        )
    clock.lap("read_s")
    decorator = function.prepare(settings, spark)
    clock.lap("lookups_s")
    frame = decorator.apply_pandas(raw)
    clock.lap("decorate_s")
    frame = frame.sort_values(time_column, kind="mergesort").reset_index(drop=True)

    numeric, categories = _split_types(frame, features, categorical)
    spec = ModelSpec(
        feature_function=feature_function,
        raw_columns=tuple(raw_columns),
        numeric=tuple(numeric),
        categorical=tuple(categories),
        target=target,
        task=task,
        label_threshold=label_threshold,
        decision_threshold=decision_threshold,
        dataset=dataset,
        time_column=time_column,
    )

    cut = int(len(frame) * (1 - holdout_fraction))
    train_part, holdout_part = frame.iloc[:cut], frame.iloc[cut:]
    X_train = feature_functions.model_frame(train_part, numeric, categories)
    X_hold = feature_functions.model_frame(holdout_part, numeric, categories)
    y_train, y_hold = spec.label(train_part[target]), spec.label(holdout_part[target])
    if task == "classification" and y_train.nunique() < 2:
        raise TrainingError(
            f"The training rows have a single class of '{target} > {label_threshold}'; widen train_where or change label_threshold."
        )
    warnings = []
    if len(train_part) and len(holdout_part) and train_part[time_column].max() >= holdout_part[time_column].min():
        warnings.append(
            f"The holdout's time range overlaps training's: '{time_column}' has equal values on both sides of the "
            "cut, so the holdout is not strictly later than training. Use a finer time_column."
        )

    estimator = ESTIMATORS[model][task](params)
    pipeline = build_pipeline(numeric, categories, estimator)
    pipeline.fit(X_train, y_train)
    clock.lap("fit_s")
    scores = _scores(pipeline, X_hold, task)
    metrics = compute_metrics(y_hold, scores, task, decision_threshold)

    identity = {
        "dataset": dataset,
        "filter": train_where or "",
        "feature_function": feature_function,
        "lookups": {
            key: {"dataset": ds, "rows": int(len(decorator.lookups[key]))} for key, (ds, _) in function.lookups.items()
        },
        "rows_loaded": int(rows_loaded),
        "rows_dropped_null_target": int(rows_loaded - rows_kept),
        "rows_train": int(len(train_part)),
        "rows_holdout": int(len(holdout_part)),
        "train_time_range": _range(train_part[time_column]),
        "holdout_time_range": _range(holdout_part[time_column]),
        "parquet_files": files,
        "warnings": warnings,
        "parquet_files_sha256": _sha256("\n".join(files)),
        "content_sha256": _frame_hash(frame[wanted]),
    }

    registry.configure(settings)
    experiment_id = _experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or f"{model}-{dataset}") as run:
        mlflow.log_params(
            {
                "dataset": dataset,
                "target": target,
                "task": task,
                "label_threshold": label_threshold,
                "decision_threshold": decision_threshold,
                "train_where": train_where or "",
                "model": model,
                "feature_function": feature_function,
                "features": ",".join(features),
                "time_column": time_column,
                "holdout_fraction": holdout_fraction,
                **{f"hp_{k}": v for k, v in _estimator_params(estimator).items()},
            }
        )
        mlflow.log_metrics(
            {
                **metrics,
                "rows_train": float(len(train_part)),
                "rows_dropped_null_target": float(rows_loaded - rows_kept),
            }
        )
        commit, dirty = git_state(settings.home).or_unknown()
        mlflow.set_tags(
            {
                "mlflow.source.git.commit": commit,
                "workbench.git_dirty": str(dirty).lower(),
                "workbench.feature_function": feature_function,
                "workbench.dataset": dataset,
                "workbench.content_sha256": identity["content_sha256"],
            }
        )
        mlflow.log_dict(identity, DATA_IDENTITY_ARTIFACT)
        mlflow.log_dict(spec.to_metadata(), SPEC_ARTIFACT)
        _log_schema(X_train.assign(**{target: train_part[target].to_numpy()}))
        _log_importance(pipeline)
        _log_charts(y_hold.to_numpy(), scores, task, decision_threshold)

        example = X_train.head(5)
        signature = _signature(spec, _pyfunc_output(pipeline, example, task))
        info = mlflow.sklearn.log_model(
            pipeline,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=example,
            pyfunc_predict_fn="predict_proba" if task == "classification" else "predict",
            serialization_format="skops",
            skops_trusted_types=_trusted_types(pipeline),
            metadata={METADATA_KEY: spec.to_metadata()},
        )
        run_id = run.info.run_id
        clock.lap("log_s")
        mlflow.log_metrics({f"seconds_{k[:-2]}": v for k, v in clock.laps.items()})

    result = TrainResult(
        run_id=run_id,
        model_uri=info.model_uri,
        spec=spec,
        metrics=metrics,
        pipeline=pipeline,
        holdout=X_hold,
        holdout_label=y_hold,
        holdout_scores=scores,
        data_identity=identity,
        description=resolved.description,
        warnings=warnings,
    )
    if register:
        version = registry.register(
            info.model_uri,
            name,
            alias=alias,
            settings=settings,
            tags={
                "workbench.feature_function": feature_function,
                "workbench.dataset": dataset,
                "workbench.train_where": train_where or "",
                "workbench.task": task,
                "workbench.content_sha256": identity["content_sha256"],
            },
        )
        result.version, result.name = version.version, version.name
    return result


# ---- helpers --------------------------------------------------------------------------------------------
class _Clock:
    """Seconds spent per phase of training (logged as seconds_* metrics: where does the time go?)."""

    def __init__(self) -> None:
        import time

        self._time = time.perf_counter
        self._last = self._time()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = self._time()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def _split_types(
    frame: pd.DataFrame, features: list[str], categorical: list[str] | None
) -> tuple[list[str], list[str]]:
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise TrainingError(
            f"Feature(s) {', '.join(missing)} are neither in the dataset nor added by the feature function. "
            "Check `features` against the dataset's columns and workbench.features."
        )
    if categorical is not None:
        cats = [c for c in features if c in set(categorical)]
    else:
        cats = [
            c for c in features if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
        ]
    bad = [c for c in cats if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if bad:
        raise TrainingError(
            f"Feature(s) {', '.join(bad)} are timestamps; derive numbers from them in a feature function instead."
        )
    return [c for c in features if c not in cats], cats


def _signature(spec: ModelSpec, output: np.ndarray):
    """Every model column required (a frame without it is rejected), nulls allowed in any of them.

    Built from the spec, not inferred from the example: inference would mark a column optional just
    because the example rows happen to hold a null in it."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("double", c) for c in spec.numeric] + [ColSpec("string", c) for c in spec.categorical])
    return ModelSignature(inputs=inputs, outputs=infer_signature(model_output=output).outputs)


def _pyfunc_output(pipeline, X: pd.DataFrame, task: str) -> np.ndarray:
    return pipeline.predict_proba(X) if task == "classification" else pipeline.predict(X)


def _trusted_types(pipeline) -> list[str]:
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    extra = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if extra:
        raise TrainingError(
            f"The pipeline holds type(s) {', '.join(extra)} that skops would have to trust. "
            "Add them to workbench.training.TRUSTED_TYPES after checking they are safe to load."
        )
    return sorted(untrusted)


def _estimator_params(estimator) -> dict[str, Any]:
    return {k: v for k, v in estimator.get_params().items() if v is None or isinstance(v, (int, float, str, bool))}


def _experiment(settings: Settings) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    existing = client.get_experiment_by_name(settings.mlflow_experiment)
    if existing:
        return existing.experiment_id
    return client.create_experiment(
        settings.mlflow_experiment, artifact_location=f"{settings.artifacts_uri}/{settings.mlflow_experiment}"
    )


def _files_read(df) -> list[str]:
    """The data files the rows came from (after partition pruning and the filters), not every file
    of the dataset that `inputFiles()` lists; falls back to `inputFiles()` where the name is unknown."""
    from pyspark.sql import functions as F

    rows = df.select(F.input_file_name().alias("file")).distinct().collect()
    files = sorted(r["file"] for r in rows if r["file"])
    return files or sorted(df.inputFiles())


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of the rows and columns used (order-independent across row order)."""
    row_hashes = np.sort(pd.util.hash_pandas_object(frame, index=False).to_numpy())
    return hashlib.sha256(row_hashes.tobytes() + ",".join(frame.columns).encode()).hexdigest()


def _range(series: pd.Series) -> list[str]:
    return [str(series.min()), str(series.max())] if len(series) else []


def _log_schema(frame: pd.DataFrame) -> None:
    import mlflow

    from .validation import infer_schema

    mlflow.log_text(infer_schema(frame).to_json(), SCHEMA_ARTIFACT)


def _log_importance(pipeline) -> None:
    import mlflow
    from matplotlib.figure import Figure

    table = feature_importance(pipeline)
    if table.empty:
        return
    mlflow.log_text(table.to_csv(index=False), "feature_importance.csv")
    top = table.head(20).iloc[::-1]
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ax.barh(top["feature"], top["importance"])
    ax.set_title(f"Feature importance ({table['kind'].iloc[0]})")
    fig.tight_layout()
    mlflow.log_figure(fig, "charts/feature_importance.png")


def charts(y, scores: np.ndarray, task: str, threshold: float = 0.5) -> dict[str, Any]:
    """Standard holdout charts as matplotlib Figures: ROC, PR and confusion matrix, or residuals."""
    from matplotlib.figure import Figure

    y = np.asarray(y)
    out: dict[str, Any] = {}
    if len(y) == 0:
        return out
    if task == "classification" and len(np.unique(y)) == 2:
        from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

        for name, draw, title in (
            ("roc", lambda ax: RocCurveDisplay.from_predictions(y, scores, ax=ax), "ROC (holdout)"),
            ("pr", lambda ax: PrecisionRecallDisplay.from_predictions(y, scores, ax=ax), "Precision-recall (holdout)"),
            (
                "confusion",
                lambda ax: ConfusionMatrixDisplay.from_predictions(
                    y, (scores >= threshold).astype(int), ax=ax, colorbar=False
                ),
                f"Confusion matrix at {threshold:g}",
            ),
        ):
            fig = Figure(figsize=(5, 4))
            ax = fig.subplots()
            draw(ax)
            ax.set_title(title)
            fig.tight_layout()
            out[name] = fig
    elif task == "regression":
        fig = Figure(figsize=(5, 4))
        ax = fig.subplots()
        ax.scatter(scores, y - scores, s=3, alpha=0.3)
        ax.axhline(0, color="grey")
        ax.set_xlabel("prediction")
        ax.set_ylabel("residual")
        ax.set_title("Residuals (holdout)")
        fig.tight_layout()
        out["residuals"] = fig
    return out


def _log_charts(y: np.ndarray, scores: np.ndarray, task: str, threshold: float) -> None:
    import mlflow

    for name, fig in charts(y, scores, task, threshold).items():
        mlflow.log_figure(fig, f"charts/{name}.png")
