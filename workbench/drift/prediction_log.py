"""The prediction log as a window: one served model's log, for a range of serving days, as a Spark DataFrame.

The serving wrapper (`workbench.serving.predlog`) writes `<predictions_dir>/<model>/date=YYYY-MM-DD/part-*.parquet`
(Hive-style day partitions, the UTC day a request arrived). `load_prediction_log` lists the day folders and hands
Spark only those in the range (the files of other days are never opened), keeps the compared columns (the others are
never read from parquet) and leaves out the shadow model's copies of answered rows. It reads; the writer owns the
layout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import Settings, load_settings
from ..errors import DriftError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["PREDICTION_LOG_COLUMNS", "load_prediction_log", "log_model_name"]

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
PREDICTION_LOG_COLUMNS = ("request_id", "entity_id", "prediction", "model_version", "variant", "timestamp")


def load_prediction_log(
    settings: Settings | None = None,
    where: str | None = None,
    spark=None,
    model: str | None = None,
    dates: str | Sequence[str | None] | None = None,
    columns: Sequence[str] | None = None,
    shadow: bool = False,
) -> DataFrame:
    """One model's prediction log, as the serving wrapper writes it under the `predictions_dir` setting:
    `<predictions_uri>/<model>/date=YYYY-MM-DD/part-*.parquet`, with the partition column `date`.

    model: the served model's name, or a `models:/NAME@ALIAS` / `models:/NAME/VERSION` URI (default: the
    `model_name` setting, which `workbench serve` logs under). dates: the serving days (UTC, when the request
    arrived) to read, `"YYYY-MM-DD"` or `[first, last]` inclusive, either end None or "" for open; only the
    folders of those days are listed to Spark, so other days are never opened. columns: the feature columns to
    keep (with the log's own PREDICTION_LOG_COLUMNS and `date`); the others are never read from parquet.
    shadow: keep the shadow model's rows too (copies of answered requests, scored by the shadow model);
    by default only the answered rows, so no request counts twice. `where` (Spark SQL on the log) applies
    before the projection, so it may name any column of the log.
    """
    from pyspark.sql import functions as F

    from .. import storage
    from ..spark import get_spark

    settings = settings or load_settings()
    spark = spark or get_spark(settings=settings)
    root = settings.predictions_uri.rstrip("/")
    name = log_model_name(model, settings)
    folder = f"{root}/{name}"
    if not storage.exists(folder, spark):
        present = [d for d in storage.list_dir(root, spark) if not d.startswith((".", "_"))]
        raise DriftError(
            f"There is no prediction log of model '{name}' under the predictions_dir setting"
            + (f" (it holds the logs of: {', '.join(present)})." if present else " (it holds none yet).")
            + " The serving wrapper writes it while it answers requests; pass the served model's name as `model`, "
            "or monitor the dataset (predictions = False) until it has served."
        )
    first, last = _date_range(dates)
    days = sorted(d for d in storage.list_dir(folder, spark) if d.startswith("date="))
    dated = [d for d in days if _DAY.fullmatch(d[5:])]  # a row without a timestamp lands in date=unknown
    chosen = [d for d in dated if (not first or d[5:] >= first) and (not last or d[5:] <= last)]
    if not chosen and (first or last or not days):
        held = f"{dated[0][5:]} to {dated[-1][5:]}" if dated else "no day yet"
        raise DriftError(
            f"The prediction log of model '{name}' has no day between {first or 'its first'} and {last or 'its last'} "
            f"(it holds {held}). Choose dates the model served on."
        )
    reader = spark.read.option("basePath", folder)
    df = reader.parquet(*[f"{folder}/{d}" for d in chosen]) if first or last else reader.parquet(folder)
    missing = [c for c in PREDICTION_LOG_COLUMNS if c not in df.columns]
    if missing:
        raise DriftError(
            f"The prediction log has no column(s) {', '.join(missing)}; expected {', '.join(PREDICTION_LOG_COLUMNS)} "
            "plus the model's input columns."
        )
    if not shadow and "shadow" in df.columns:
        df = df.where(~F.coalesce(F.col("shadow"), F.lit(False)))
    if where:
        df = df.where(where)
    if columns is not None:
        absent = [c for c in columns if c not in df.columns]
        if absent:
            raise DriftError(
                f"feature(s) {', '.join(absent)} not in the prediction log of model '{name}'. "
                f"Its columns: {', '.join(df.columns)}."
            )
        keep = [*PREDICTION_LOG_COLUMNS, "date", *columns]
        df = df.select(*[c for c in dict.fromkeys(keep) if c in df.columns])
    return df


def log_model_name(model: str | None, settings: Settings) -> str:
    """The folder a model's prediction log is in: the name of a registered model URI, or the name itself;
    the `model_name` setting when None (or a logged model `models:/m-...`, which is served under it)."""
    if not model or (model.startswith("models:/") and model[len("models:/") :].lstrip("/").startswith("m-")):
        if not settings.model_name:
            raise DriftError(
                "Which model's prediction log? Pass the served model's name (or its models:/ URI) as `model`, "
                "or set the model_name setting (WORKBENCH_MODEL_NAME)."
            )
        return settings.model_name
    if not model.startswith("models:/"):
        if "/" in model or model in (".", ".."):
            raise DriftError(
                f"'{model}' is not a model name: pass the served model's name, e.g. '{settings.model_name}'."
            )
        return model
    path = model[len("models:/") :].lstrip("/")
    name = path.partition("@")[0] if "@" in path else path.partition("/")[0]
    if not name:
        raise DriftError(f"'{model}' names no model: use models:/NAME@ALIAS or models:/NAME/VERSION.")
    return name


def _date_range(dates: str | Sequence[str | None] | None) -> tuple[str, str]:
    """("YYYY-MM-DD" or "", same) from one day, a [first, last] pair, or None."""
    import datetime as dt

    if dates is None or dates == "" or (not isinstance(dates, str) and not len(dates)):
        return "", ""
    pair = [dates, dates] if isinstance(dates, str) else list(dates)
    if len(pair) != 2:
        raise DriftError(f"prediction dates must be one day or [first, last]; found {list(pair)}.")
    out = []
    for value in pair:
        value = "" if value is None else str(value).strip()
        if value:
            try:
                value = dt.date.fromisoformat(value).isoformat()
            except ValueError:
                raise DriftError(f"prediction date '{value}' is not a day as YYYY-MM-DD (UTC).") from None
        out.append(value)
    if out[0] and out[1] and out[0] > out[1]:
        raise DriftError(f"prediction dates run backwards: {out[0]} is after {out[1]}.")
    return out[0], out[1]
