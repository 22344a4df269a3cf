"""Profiling a dataset with Spark: counts, nulls, numeric summaries, top values, correlations, plots.

The aggregates run in Spark over every row (one pass for the column summary, one for all top
values); plots and correlations use a sample brought to pandas. Used by notebooks/01_explore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from pyspark.sql import DataFrame

__all__ = [
    "Profile",
    "profile",
    "top_values",
    "sample_rows",
    "numeric_columns",
    "categorical_columns",
    "plot_distributions",
    "plot_top_values",
    "plot_correlations",
    "correlations",
]

_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double", "decimal")
_CATEGORICAL = ("string", "boolean")


@dataclass
class Profile:
    """The column summary (a pandas DataFrame, one row per column) and the row count."""

    rows: int
    columns: pd.DataFrame

    @property
    def max_null_share(self) -> float:
        return float(self.columns["null_share"].max()) if len(self.columns) else 0.0

    @property
    def mean_null_share(self) -> float:
        return float(self.columns["null_share"].mean()) if len(self.columns) else 0.0

    def most_null(self, n: int = 5) -> pd.DataFrame:
        return self.columns.sort_values("null_share", ascending=False).head(n)[
            ["column", "type", "nulls", "null_share"]
        ]


def _kind(type_name: str) -> str:
    base = type_name.split("(")[0]
    if base in _NUMERIC:
        return "numeric"
    if base in _CATEGORICAL:
        return "categorical"
    return "other"


def numeric_columns(df: DataFrame) -> list[str]:
    return [f.name for f in df.schema.fields if _kind(f.dataType.simpleString()) == "numeric"]


def categorical_columns(df: DataFrame) -> list[str]:
    return [f.name for f in df.schema.fields if _kind(f.dataType.simpleString()) == "categorical"]


def profile(df: DataFrame) -> Profile:
    """Per column: type, nulls, null share, approximate distinct count, and min/max/mean/stddev for numbers."""
    import pandas as pd
    from pyspark.sql import functions as F

    fields = df.schema.fields
    aggs = [F.count(F.lit(1)).alias("__rows")]
    for i, f in enumerate(fields):
        c = F.col(f"`{f.name}`")
        aggs += [F.count(c).alias(f"n{i}"), F.approx_count_distinct(c).alias(f"d{i}")]
        if _kind(f.dataType.simpleString()) == "numeric":
            x = c.cast("double")
            aggs += [
                F.min(x).alias(f"min{i}"),
                F.max(x).alias(f"max{i}"),
                F.mean(x).alias(f"mean{i}"),
                F.stddev(x).alias(f"std{i}"),
            ]
    row = df.agg(*aggs).collect()[0].asDict()
    rows = int(row["__rows"])
    records = []
    for i, f in enumerate(fields):
        present = int(row[f"n{i}"])
        records.append(
            {
                "column": f.name,
                "type": f.dataType.simpleString(),
                "nulls": rows - present,
                "null_share": (rows - present) / rows if rows else 0.0,
                "distinct": int(row[f"d{i}"]),
                "min": row.get(f"min{i}"),
                "max": row.get(f"max{i}"),
                "mean": row.get(f"mean{i}"),
                "std": row.get(f"std{i}"),
            }
        )
    return Profile(rows=rows, columns=pd.DataFrame.from_records(records))


def top_values(df: DataFrame, columns: Sequence[str] | None = None, k: int = 10) -> pd.DataFrame:
    """The k most frequent values of each categorical column, in one Spark pass: column, value, count, share."""
    import pandas as pd
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    columns = list(columns) if columns is not None else categorical_columns(df)
    if not columns:
        return pd.DataFrame(columns=["column", "value", "count", "share"])
    pairs = F.explode(
        F.array(*[F.struct(F.lit(c).alias("column"), F.col(f"`{c}`").cast("string").alias("value")) for c in columns])
    )
    counts = df.select(pairs.alias("p")).select("p.column", "p.value").groupBy("column", "value").count()
    ranked = (
        counts.withColumn("total", F.sum("count").over(Window.partitionBy("column")))
        .withColumn("rank", F.row_number().over(Window.partitionBy("column").orderBy(F.desc("count"), F.asc("value"))))
        .where(F.col("rank") <= k)
    )
    out = ranked.select("column", "value", "count", (F.col("count") / F.col("total")).alias("share")).toPandas()
    order = {c: i for i, c in enumerate(columns)}
    return out.sort_values(["column", "count"], key=lambda s: s.map(order) if s.name == "column" else -s).reset_index(
        drop=True
    )


def sample_rows(df: DataFrame, n: int, seed: int = 42, rows: int | None = None) -> pd.DataFrame:
    """Up to n rows as pandas, deterministic for a seed (pass `rows` when the count is known)."""
    total = df.count() if rows is None else rows
    if total > n:
        df = df.sample(fraction=min(1.0, 1.2 * n / total), seed=seed).limit(n)
    return df.toPandas()


def correlations(sample: pd.DataFrame) -> pd.DataFrame:
    numeric = sample.select_dtypes("number")
    numeric = numeric.loc[:, numeric.nunique(dropna=True) > 1]
    return numeric.astype("float64").corr()


def _grid(n: int, per_row: int = 4, size: float = 3.0):
    import matplotlib.pyplot as plt

    rows = max(1, -(-n // per_row))
    fig, axes = plt.subplots(
        rows, min(n, per_row) or 1, figsize=(size * min(n, per_row or 1), size * 0.8 * rows), squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def plot_distributions(sample: pd.DataFrame, columns: Sequence[str] | None = None, bins: int = 30) -> Figure | None:
    """A histogram per numeric column of the sample."""
    cols = [c for c in (columns or sample.select_dtypes("number").columns) if sample[c].notna().any()]
    if not cols:
        return None
    fig, axes = _grid(len(cols))
    for ax, col in zip(axes, cols):
        ax.hist(sample[col].dropna().astype("float64"), bins=bins, color="#4c72b0")
        ax.set_title(col, fontsize=10)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def plot_top_values(top: pd.DataFrame, per_column: int = 10) -> Figure | None:
    """A horizontal bar chart of the top values per categorical column."""
    cols = list(dict.fromkeys(top["column"]))
    if not cols:
        return None
    fig, axes = _grid(len(cols), per_row=3, size=3.6)
    for ax, col in zip(axes, cols):
        part = top[top["column"] == col].head(per_column).iloc[::-1]
        ax.barh(part["value"].fillna("(null)").astype(str), part["count"], color="#55a868")
        ax.set_title(col, fontsize=10)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def plot_correlations(corr: pd.DataFrame) -> Figure | None:
    """A heatmap of a correlation matrix."""
    import matplotlib.pyplot as plt

    if corr.shape[0] < 2:
        return None
    size = min(12, 1.5 + 0.5 * corr.shape[0])
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(corr.values, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(corr.columns)), corr.columns, rotation=90, fontsize=8)
    ax.set_yticks(range(len(corr.index)), corr.index, fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig
