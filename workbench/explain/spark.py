"""Batch explanations at Spark scale: SHAP values for every row of a Spark DataFrame.

    path = explain_spark("models:/NAME@champion", spark_df)                 # parquet next to the input
    path = explain_spark(uri, spark_df, output="s3a://bucket/audits/shap/v7")  # or where you say
    df = shap_spark(uri, spark_df)                                              # lazy, nothing written
    ranking_spark(df)                                                           # global mean |SHAP|, aggregated by Spark

One `mapInPandas` pass: each Arrow batch of raw rows is decorated by the model's feature function,
selected by its spec and explained by the same attributor as the in-memory path, so values match
`ModelExplainer.explain` on the same rows. The model, its attributor and the feature function's
lookup tables travel to the executors once, as a Spark broadcast (inside the UDF when there is no
SparkContext, i.e. Spark Connect), and each Python worker unpickles them and builds the SHAP
explainer once, then reuses it for every batch and task it runs.

Output columns: the input's columns, `prediction` (P(positive) or the prediction), `shap_base_value`,
and `shap_<feature>` for every raw model feature (output units: log-odds for a classifier).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import storage
from ..config import Settings
from ..errors import ExplainError
from ..features import model_frame
from .core import ModelExplainer, load_explainer

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["explain_spark", "shap_spark", "ranking_spark", "PREFIX", "PREDICTION", "BASE_VALUE", "WRITE_MODES"]

PREFIX = "shap_"
PREDICTION = "prediction"
BASE_VALUE = "shap_base_value"
WRITE_MODES = ("errorifexists", "overwrite")

# Per Python worker: the unpickled payload of each explain call (model, attributor, lookups), by call token.
_WORKER_STATE: dict[str, Any] = {}
_WORKER_KEEP = 2


@dataclass
class _Payload:
    """What every worker needs: the feature function with its lookups, and the attributor."""

    decorator: Any
    attributor: Any
    numeric: list[str]
    categorical: list[str]
    features: list[str]
    keep: list[str]

    def explain_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = batch[self.keep].reset_index(drop=True)
        if len(batch) == 0:
            extra = {PREDICTION: [], BASE_VALUE: [], **{PREFIX + f: [] for f in self.features}}
            return pd.concat([out, pd.DataFrame(extra, dtype="float64")], axis=1)
        X = model_frame(self.decorator.apply_pandas(batch.reset_index(drop=True)), self.numeric, self.categorical)
        values, base, prediction = self.attributor.attribute(X)
        extra = pd.DataFrame(
            {
                PREDICTION: prediction,
                BASE_VALUE: base,
                **{PREFIX + f: values[:, j] for j, f in enumerate(self.features)},
            }
        )
        return pd.concat([out, extra], axis=1)


def _payload(token: str, source) -> _Payload:
    state = _WORKER_STATE.get(token)
    if state is None:
        while len(_WORKER_STATE) >= _WORKER_KEEP:
            _WORKER_STATE.pop(next(iter(_WORKER_STATE)))
        state = _WORKER_STATE[token] = source.value if hasattr(source, "value") else source
        if hasattr(state.attributor, "single_threaded"):
            state.attributor.single_threaded()
    return state


def _explain_partition(token: str, source, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Runs on the executors (module-level, so it is pickled by reference and its cache survives tasks)."""
    payload = _payload(token, source)
    for batch in batches:
        yield payload.explain_batch(batch)


def _plan(
    model_uri: str,
    spark_df: DataFrame,
    settings: Settings | None,
    explainer: ModelExplainer | None,
    keep: list[str] | None,
):
    from pyspark.sql.types import DoubleType, StructField, StructType

    explainer = explainer or load_explainer(model_uri, settings, spark_df.sparkSession)
    spec = explainer.spec
    missing = [c for c in spec.raw_columns if c not in spark_df.columns]
    if missing:
        raise ExplainError(
            f"The DataFrame lacks column(s) {', '.join(missing)} that model {model_uri} needs "
            f"(feature function '{spec.feature_function}'). Select them from the dataset too."
        )
    keep = list(spark_df.columns) if keep is None else list(keep)
    unknown = [c for c in keep if c not in spark_df.columns]
    if unknown:
        raise ExplainError(f"Parameter 'keep' names column(s) {', '.join(unknown)} that the DataFrame does not have.")
    added = [PREDICTION, BASE_VALUE, *(PREFIX + f for f in spec.features)]
    clash = [c for c in added if c in keep]
    if clash:
        raise ExplainError(
            f"The DataFrame already has column(s) {', '.join(clash)}, which the explanation adds; "
            "drop or rename them, or leave them out with `keep`."
        )
    fields = {f.name: f for f in spark_df.schema.fields}
    schema = StructType([fields[c] for c in keep] + [StructField(c, DoubleType(), True) for c in added])
    payload = _Payload(
        explainer.decorator, explainer.attributor, list(spec.numeric), list(spec.categorical), list(spec.features), keep
    )
    source, broadcast = payload, None
    try:
        broadcast = spark_df.sparkSession.sparkContext.broadcast(payload)
        source = broadcast
    except Exception:  # Spark Connect has no SparkContext: the payload travels inside the UDF instead
        pass
    token = uuid.uuid4().hex
    # mapInPandas hands the function only the batches, so the raw columns needed for decoration ride along.
    needed = list(dict.fromkeys([*keep, *spec.raw_columns]))
    df = spark_df.select(*needed).mapInPandas(functools.partial(_explain_partition, token, source), schema)
    return df, broadcast, explainer


def shap_spark(
    model_uri: str,
    spark_df: DataFrame,
    settings: Settings | None = None,
    explainer: ModelExplainer | None = None,
    keep: list[str] | None = None,
) -> DataFrame:
    """A lazy DataFrame of `keep` (default: all input columns) + prediction + SHAP value columns."""
    df, _, _ = _plan(model_uri, spark_df, settings, explainer, keep)
    return df


def explain_spark(
    model_uri: str,
    spark_df: DataFrame,
    output: str | None = None,
    settings: Settings | None = None,
    explainer: ModelExplainer | None = None,
    keep: list[str] | None = None,
    mode: str = "errorifexists",
    partitions: int | None = None,
) -> str:
    """Explain every row of `spark_df` and write parquet; returns the output URI.

    output: where to write; default `<input folder>_shap/<model>-v<version>` next to the files the
    DataFrame was read from (partition folders such as month=1 are stepped over). mode: 'errorifexists'
    or 'overwrite'. partitions: repartition the input first (e.g. a multiple of the cores, when the
    input has few large files).
    """
    if mode not in WRITE_MODES:
        raise ExplainError(f"Parameter 'mode' is '{mode}'; expected one of {', '.join(WRITE_MODES)}.")
    if partitions is not None and partitions <= 0:
        raise ExplainError(f"Parameter 'partitions' must be a positive number; found {partitions}.")
    explainer = explainer or load_explainer(model_uri, settings, spark_df.sparkSession)
    output = output or _next_to_input(spark_df, explainer)
    source = spark_df.repartition(partitions) if partitions else spark_df
    if mode == "errorifexists" and storage.exists(output, spark_df.sparkSession):
        raise ExplainError(f"The output {output} already exists; pass mode='overwrite' or another output.")
    df, broadcast, _ = _plan(model_uri, source, settings, explainer, keep)
    try:
        df.write.mode(mode).parquet(output)
    finally:
        if broadcast is not None:
            broadcast.unpersist()
    return output


def ranking_spark(explained: DataFrame, prefix: str = PREFIX) -> pd.DataFrame:
    """Global ranking (mean |SHAP| per feature) of a `shap_spark` / `explain_spark` output, computed by Spark.

    Same columns as `Explanation.ranking()`, so two windows compare with `compare_rankings`."""
    from pyspark.sql import functions as F

    columns = [c for c in explained.columns if c.startswith(prefix) and c != BASE_VALUE]
    if not columns:
        raise ExplainError(f"The DataFrame has no '{prefix}*' columns; pass the output of explain_spark or shap_spark.")
    row = explained.agg(*[F.avg(F.abs(F.col(c))).alias(c) for c in columns]).collect()[0]
    from .results import ranking_of

    means = pd.DataFrame([[float(row[c] or 0.0) for c in columns]], columns=[c[len(prefix) :] for c in columns])
    return ranking_of(means)


def _next_to_input(spark_df: DataFrame, explainer: ModelExplainer) -> str:
    files = spark_df.inputFiles()
    if not files:
        raise ExplainError(
            "The DataFrame was not read from files, so there is no folder to write next to; pass `output`."
        )
    folders = [f.rsplit("/", 1)[0].split("/") for f in files]
    common = folders[0]
    for parts in folders[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    while common and "=" in common[-1]:
        common = common[:-1]
    root = "/".join(common)
    if not root or root.endswith(":"):
        raise ExplainError("The DataFrame's files share no folder to write next to; pass `output`.")
    tag = f"{explainer.name}-v{explainer.version}" if explainer.version else _safe(explainer.model_uri)
    return f"{root}_shap/{tag}"


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text.split(":/", 1)[-1]).strip("_")
