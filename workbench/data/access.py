"""Reading datasets by name: the only way notebooks and jobs get data from the lake."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..config import Settings, load_settings
from ..errors import LakeError
from .catalog import load_catalog

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = ["load", "sample"]


def load(name: str, columns: Sequence[str] | None = None, where: str | None = None, purpose: str | None = None,
         settings: Settings | None = None, spark=None) -> "DataFrame":
    """A Spark DataFrame of the named dataset, optionally projected and filtered (Spark SQL predicate)."""
    from ..spark import get_spark

    settings = settings or load_settings()
    dataset = load_catalog(settings).get(name)
    spark = spark or get_spark(settings=settings)
    try:
        df = spark.read.format(dataset.format).load(dataset.uri)
    except Exception as exc:
        raise LakeError(f"Dataset '{name}' could not be read from {dataset.uri} ({exc.__class__.__name__}). Run `workbench lake init` if this is the sample lake.") from exc
    if where:
        df = df.where(where)
    if columns:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise LakeError(f"Dataset '{name}' has no column(s) {', '.join(missing)}. Its columns: {', '.join(df.columns)}.")
        df = df.select(*columns)
    return df


def sample(name: str, n: int = 1000, seed: int = 42, **kwargs) -> "pd.DataFrame":
    """Up to `n` rows of the dataset as pandas, deterministic for a given seed."""
    df = load(name, **kwargs)
    total = df.count()
    if total > n:
        df = df.sample(fraction=min(1.0, 1.2 * n / total), seed=seed).limit(n)
    return df.toPandas()
