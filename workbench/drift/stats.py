"""Drift statistics at Spark scale: a current window against a reference window (`compute_drift`).

The Spark path reads the windows a fixed number of times, whatever the row or feature count, and the
number of Spark jobs does not grow with the features (see `histograms`):

1. bin edges from the reference: a count and a uniform sample of at most about `edge_sample` of its
   rows (`binning="quantile"`), or one aggregation for the range (`binning="sturges"`);
2. one `mapInArrow` pass over both windows, labelled, computing every histogram at once in numpy
   and Arrow per batch; one small Spark aggregation merges the per-partition partials.

Only those aggregates reach the driver (at most 2 x features x (resolution + 3) rows plus
2 x (top_k + 1) per categorical feature), so driver memory does not grow with the row count. From them
(`kernels`): PSI and Jensen-Shannon distance on `bins` reference-quantile bins, a Wasserstein distance on
the finer `resolution` bins (normalised by the reference standard deviation, as Evidently does), and a
chi-square test for categorical features.

A numerical feature whose reference has at most 20 distinct values (a 0/1 flag, a code, an hour) is
counted by value, as Evidently does, under either binning: one quantile bin would hide a moved mean.
`binning="sturges"` bins the other numerical features like Evidently does for PSI and Jensen-Shannon
(equal-width bins over the range of both windows, Sturges' count), so the two agree to float
precision on the same data.

This module owns the entry points (`compute_drift`, `split_features`, `sample_windows`) and re-exports
the results and thresholds of `report` and the binning of `kernels`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DriftError
from .histograms import Edges, histogram_table, reference_edges
from .kernels import MISSING_BIN, OTHER, Binner, bin_index, categorical_drift, numeric_drift
from .report import METHODS, STATUSES, DriftReport, FeatureDrift, Thresholds, worst_status

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = [
    "METHODS",
    "STATUSES",
    "OTHER",
    "Thresholds",
    "FeatureDrift",
    "DriftReport",
    "compute_drift",
    "split_features",
    "worst_status",
    "sample_windows",
    "bin_index",
    "Binner",
]

BINNINGS = ("quantile", "sturges")
_NUMERIC_TYPES = ("byte", "short", "int", "long", "float", "double", "decimal", "bigint", "smallint", "tinyint")


# ---- feature kinds ---------------------------------------------------------------------------------
def split_features(
    df: DataFrame,
    features: Sequence[str] | None = None,
    numerical: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
) -> tuple[list[str], list[str]]:
    """(numerical, categorical) feature names. Explicit lists win; the rest follow the Spark type:
    numbers are numerical, strings and booleans categorical. Dates and timestamps are refused."""
    numerical, categorical = list(numerical or []), list(categorical or [])
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    wanted = list(features) if features else [c for c in df.columns if c not in numerical and c not in categorical]
    wanted = [c for c in wanted if c not in numerical and c not in categorical]
    missing = [c for c in [*wanted, *numerical, *categorical] if c not in types]
    if missing:
        raise DriftError(f"feature(s) {', '.join(missing)} not in the data. Its columns: {', '.join(df.columns)}.")
    for name in wanted:
        t = types[name]
        if t.split("(")[0] in _NUMERIC_TYPES:
            numerical.append(name)
        elif t in ("string", "boolean") or t.startswith("varchar") or t.startswith("char"):
            categorical.append(name)
        else:
            raise DriftError(
                f"feature '{name}' has type {t}; drift is computed for numbers, strings and booleans. "
                "Leave it out of `features` or derive a numeric feature from it (e.g. the hour)."
            )
    if not numerical and not categorical:
        raise DriftError("no features to compare: pass `features` (column names).")
    return numerical, categorical


# ---- the Spark path --------------------------------------------------------------------------------
def compute_drift(
    reference: DataFrame,
    current: DataFrame,
    features: Sequence[str] | None = None,
    *,
    numerical: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    binning: str = "quantile",
    bins: int = 20,
    resolution: int = 100,
    top_k: int = 50,
    edge_sample: int = 200_000,
    seed: int = 42,
) -> DriftReport:
    """Drift of every feature of `current` against `reference` (two Spark DataFrames), in two passes
    (edges, then every histogram at once: see the module's docstring).

    `bins` reference-quantile bins for PSI and Jensen-Shannon; `resolution` finer bins (a multiple of
    `bins`) for the Wasserstein distance; `top_k` most frequent categories per categorical feature,
    the rest counted as `__other__`; quantile edges from a uniform sample of about `edge_sample`
    reference rows (the whole reference when smaller).
    """
    from pyspark.sql import functions as F

    thresholds = Thresholds.from_dict(thresholds) if not isinstance(thresholds, Thresholds) else thresholds
    thresholds.validate()
    if binning not in BINNINGS:
        raise DriftError(f"binning: expected one of {', '.join(BINNINGS)}, found '{binning}'.")
    if bins < 2 or resolution < bins or resolution % bins:
        raise DriftError(
            f"bins and resolution: expected 2 <= bins <= resolution with resolution a multiple of bins, found bins={bins}, resolution={resolution}."
        )
    if top_k < 1:
        raise DriftError("top_k: expected a positive number of categories.")
    numerical, categorical = split_features(reference, features, numerical, categorical)
    names = numerical + categorical
    missing = [c for c in names if c not in current.columns]
    if missing:
        raise DriftError(
            f"feature(s) {', '.join(missing)} not in the current window. Its columns: {', '.join(current.columns)}."
        )

    ref = reference.select(*[F.col(c) for c in names]).withColumn("__w", F.lit(0))
    cur = current.select(*[F.col(c) for c in names]).withColumn("__w", F.lit(1))
    edges = (
        reference_edges(ref, cur, numerical, binning, bins, resolution, edge_sample, seed)
        if numerical
        else Edges({}, {}, {})
    )
    table = histogram_table(ref.unionByName(cur), numerical, categorical, edges.fine, top_k, edges.center)
    fine, coarse, ref_std = edges.fine, edges.coarse, edges.std
    index = {c: i for i, c in enumerate(names)}
    for c in fine:
        if c not in ref_std:  # exact population std of the reference from its per-bin sums
            part = table[(table["f"] == index[c]) & (table["__w"] == 0) & (table["b"] != MISSING_BIN)]
            n = float(part["n"].sum())
            mean_dev = float(part["s"].sum()) / n - edges.center[c] if n else 0.0
            ref_std[c] = math.sqrt(max(float(part["q"].sum()) / n - mean_dev**2, 0.0)) if n else 0.0
    for c in numerical:
        if c not in fine and c not in ref_std:  # counted by value: the std from the reference's value counts
            part = table[(table["f"] == index[c]) & (table["__w"] == 0) & table["v"].notna()]
            n = part["n"].to_numpy(dtype=float)
            values = part["s"].to_numpy(dtype=float) / np.maximum(n, 1)
            mean = float((n * values).sum() / n.sum()) if n.sum() else 0.0
            ref_std[c] = math.sqrt(float((n * (values - mean) ** 2).sum() / n.sum())) if n.sum() else 0.0
    rows_per_window = table[table["f"] == 0].groupby("__w")["n"].sum()
    ref_rows, cur_rows = int(rows_per_window.get(0, 0)), int(rows_per_window.get(1, 0))
    if not ref_rows:
        raise DriftError("the reference window has no rows: check its filter (reference_where).")
    if not cur_rows:
        raise DriftError("the current window has no rows: check its filter (current_where).")

    results, histograms = [], {}
    for c in names:
        part = table[table["f"] == index[c]]
        miss = part[part["b"] == MISSING_BIN].groupby("__w")["n"].sum()
        present = part[part["b"] != MISSING_BIN] if c in fine else part[part["v"].notna()]
        kind = "numerical" if c in numerical else "categorical"
        if c in fine:
            fd, hist = numeric_drift(c, present, fine[c], coarse[c], ref_std[c], thresholds)
        else:
            fd, hist = categorical_drift(c, kind, present, ref_std.get(c), thresholds)
        fd.reference_missing = float(miss.get(0, 0)) / ref_rows
        fd.current_missing = float(miss.get(1, 0)) / cur_rows
        if fd.reference_count == 0 or fd.current_count == 0:
            raise DriftError(
                f"feature '{c}' has no values in the {'reference' if fd.reference_count == 0 else 'current'} window."
            )
        results.append(fd)
        histograms[c] = hist
    return DriftReport(results, ref_rows, cur_rows, thresholds, binning, histograms)


# ---- bounded samples for Evidently -------------------------------------------------------------------
def sample_windows(
    reference: DataFrame,
    current: DataFrame,
    n: int,
    columns: Sequence[str] | None = None,
    reference_rows: int | None = None,
    current_rows: int | None = None,
    seed: int = 42,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """At most `n` rows of each window as pandas, uniformly at random, for Evidently: a Bernoulli
    sample of slightly more than `n` rows, shuffled, then cut at `n` (a plain limit would favour the
    first files). Pass the row counts when known (a DriftReport has them) to save a count per window.
    """
    from pyspark.sql import functions as F

    if n < 1:
        raise DriftError("sample_rows: expected a positive number of rows.")

    def take(df, total):
        if columns:
            df = df.select(*columns)
        total = df.count() if total is None else total
        if total > n:
            df = df.sample(fraction=min(1.0, 1.1 * n / total + 1e-3), seed=seed).orderBy(F.rand(seed)).limit(n)
        return df.toPandas()

    return take(reference, reference_rows), take(current, current_rows)
