"""The Spark passes of `compute_drift`: bin edges from the reference, then every histogram in one pass.

1. Edges (`reference_edges`). Quantile binning: a count of the reference and a uniform sample of at most
   about `edge_sample` of its rows, whose quantiles (numpy, on the driver) are the bin edges of each
   numerical feature. Edges from a sample are still valid bins: every count of pass 2 is exact.
   Sturges binning: one aggregation over both windows for their range and size and the reference's
   distinct count and standard deviation, like Evidently.
2. Histograms (`histogram_table`): one `mapInArrow` pass over both windows (their union with a window
   label column `__w`: each window's rows are read once, and two windows of one table filtered on its
   partition columns, e.g. months, read disjoint files, so the table is read once). Per Arrow batch and for all features at
   once: vectorised bins (`kernels.Binner`) with `np.bincount` for each binned numerical feature's
   counts and sums per bin, its sum of squares, minimum and maximum; Arrow's `value_counts` for
   categorical features and numerical ones counted by value. Each partition returns one small partial
   table (at most features x (resolution + 3) rows per window, plus its distinct categories); one small
   Spark aggregation merges the partials and folds categories beyond the `top_k` most frequent of a
   feature (over both windows) into `__other__`, so only aggregates reach the driver.

No row is ever multiplied by the feature count, and the number of Spark jobs does not depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DriftError
from .kernels import EVIDENTLY_DISCRETE_MAX, MISSING_BIN, OTHER, Binner, distinct_edges, sturges_edges

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

# One row per (window `__w`, feature index `f`, bin `b` or value `v`): count `n`, sum `s`, sum of squares
# around the feature's center `q` (a window's total, on its first row), minimum `lo` (on bin 0) and
# maximum `hi` (on the last bin). b = MISSING_BIN counts missing values; features counted by value have
# b null and the value's string in v.
COLUMNS = ["__w", "f", "b", "v", "n", "s", "q", "lo", "hi"]
SCHEMA = "__w int, f int, b int, v string, n long, s double, q double, lo double, hi double"
_INTEGRAL = ("byte", "short", "int", "long", "bigint", "smallint", "tinyint")


@dataclass
class Edges:
    fine: dict[str, list[float]]  # numerical features binned by edges (the others by value)
    coarse: dict[str, list[float]]
    std: dict[str, float]  # reference population standard deviation per numerical feature
    center: dict[str, float] = field(default_factory=dict)  # a typical value (sample median): shift for sums of squares


def reference_edges(
    ref: DataFrame,
    cur: DataFrame,
    numerical: list[str],
    binning: str,
    bins: int,
    resolution: int,
    edge_sample: int,
    seed: int,
) -> Edges:
    """Pass 1 (see the module's docstring). Raises DriftError for an empty reference or feature."""
    from pyspark.sql import functions as F

    edges = Edges({}, {}, {})
    if binning == "quantile":
        rows = ref.count()
        if not rows:
            raise DriftError("the reference window has no rows: check its filter (reference_where).")
        source = ref.select(*[F.col(c).cast("double").alias(c) for c in numerical])
        if rows > edge_sample:
            source = source.sample(fraction=min(1.0, 1.1 * edge_sample / rows), seed=seed)
        sample = source.toPandas()
        probs = np.linspace(0.0, 1.0, resolution + 1)
        for c in numerical:
            x = sample[c].to_numpy(dtype=float)
            x = x[np.isfinite(x)]
            if not len(x):
                raise DriftError(f"feature '{c}' has no values in the reference window.")
            if len(np.unique(x)) <= EVIDENTLY_DISCRETE_MAX:  # few distinct values: counted by value, as Evidently does
                continue
            q = [float(v) for v in np.quantile(x, probs, method="inverted_cdf")]
            edges.fine[c] = distinct_edges(q)
            edges.coarse[c] = distinct_edges(q[:: resolution // bins])
            edges.center[c] = float(np.median(x))
        return edges

    is_ref = F.col("__w") == 0
    aggs = [F.sum(is_ref.cast("long")).alias("__ref_rows")]
    for i, c in enumerate(numerical):
        x = F.col(c).cast("double")
        x = F.when(~F.isnan(x), x)
        rx = F.when(is_ref, x)
        aggs += [
            F.stddev_pop(rx).alias(f"s{i}"),
            F.count(rx).alias(f"n{i}"),
            F.min(x).alias(f"lo{i}"),
            F.max(x).alias(f"hi{i}"),
            F.count(x).alias(f"nb{i}"),
            # a 5% sketch: at 1% the sketches cost seconds per column even on small windows; counts near the
            # line between binned and counted by value are made exact below
            F.approx_count_distinct(rx, 0.05).alias(f"d{i}"),
        ]
    first = ref.unionByName(cur).agg(*aggs).first()
    if not first["__ref_rows"]:
        raise DriftError("the reference window has no rows: check its filter (reference_where).")
    distinct = {i: first[f"d{i}"] for i in range(len(numerical))}
    near = [i for i, d in distinct.items() if d <= 2 * EVIDENTLY_DISCRETE_MAX]
    if near:  # few values: an exact count is cheap, and decides as Evidently's exact count does
        exact = ref.agg(
            *[
                F.countDistinct(F.when(~F.isnan(x), x)).alias(f"d{i}")
                for i in near
                for x in [F.col(numerical[i]).cast("double")]
            ]
        ).collect()[0]  # one job (first() may take two over the shuffle's partitions)
        distinct |= {i: exact[f"d{i}"] for i in near}
    for i, c in enumerate(numerical):
        edges.std[c] = float(first[f"s{i}"] or 0.0)
        if not first[f"n{i}"]:
            raise DriftError(f"feature '{c}' has no values in the reference window.")
        if distinct[i] > EVIDENTLY_DISCRETE_MAX:
            edges.fine[c] = edges.coarse[c] = sturges_edges(
                float(first[f"lo{i}"]), float(first[f"hi{i}"]), int(first[f"nb{i}"])
            )
            edges.center[c] = 0.5 * (float(first[f"lo{i}"]) + float(first[f"hi{i}"]))
    return edges


def histogram_table(
    both: DataFrame,
    numerical: list[str],
    categorical: list[str],
    fine: Mapping[str, list[float]],
    top_k: int,
    center: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Pass 2 (see the module's docstring) over `both` (the windows' union with `__w` 0 / 1): the
    merged table with COLUMNS, as pandas."""
    import pandas as pd
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = numerical + categorical
    types = {f.name: f.dataType.simpleString() for f in both.schema.fields}
    binned = [(i, c, list(fine[c]), float((center or {}).get(c, 0.0))) for i, c in enumerate(names) if c in fine]
    by_value = [
        (i, c, c in numerical, types[c].split("(")[0] in _INTEGRAL) for i, c in enumerate(names) if c not in fine
    ]
    inputs = [F.col("__w").cast("int").alias("__w")]
    inputs += [F.col(c).cast("double").alias(f"__c{i}") for i, c, _, _ in binned]
    inputs += [F.col(c).cast("double" if num else "string").alias(f"__c{i}") for i, c, num, _ in by_value]
    partials = both.select(*inputs).mapInArrow(_PartitionHistograms(binned, by_value), SCHEMA)
    merged = partials.groupBy("__w", "f", "b", "v").agg(
        F.sum("n").alias("n"),
        F.sum("s").alias("s"),
        F.sum("q").alias("q"),
        F.min("lo").alias("lo"),
        F.max("hi").alias("hi"),
    )
    # categories beyond the top_k of a feature (by count over both windows) fold into OTHER, in Spark; rows
    # without a value (a feature's missing count, its bins) rank after every category and take no place
    rank = F.dense_rank().over(
        Window.partitionBy("f").orderBy(F.col("v").isNull(), F.desc("tot"), F.asc_nulls_first("b"), F.asc("v"))
    )
    folded = (
        merged.withColumn("tot", F.sum("n").over(Window.partitionBy("f", "b", "v")))
        .withColumn("rk", rank)
        .withColumn("v", F.when(F.col("v").isNotNull() & (F.col("rk") > top_k), F.lit(OTHER)).otherwise(F.col("v")))
        .groupBy("__w", "f", "b", "v")
        .agg(
            F.sum("n").alias("n"),
            F.sum("s").alias("s"),
            F.sum("q").alias("q"),
            F.min("lo").alias("lo"),
            F.max("hi").alias("hi"),
        )
    )
    return pd.DataFrame([r.asDict() for r in folded.collect()], columns=COLUMNS)


class _PartitionHistograms:
    """The `mapInArrow` function: Arrow batches of one partition in, its partial histogram table out.

    binned: (feature index, name, edges, center) per feature binned by edges, its input column `__c<index>`
    a double. by_value: (feature index, name, is numerical, is integral) per feature counted by value,
    its input a double (numerical) or a string.
    """

    FLUSH_VALUES = 100_000  # distinct values held per partition before a partial is emitted early

    def __init__(self, binned: list, by_value: list):
        self.binned, self.by_value = binned, by_value

    def __call__(self, batches):
        import pyarrow as pa

        binners = {i: Binner(edges) for i, _, edges, _ in self.binned}
        acc = {}  # (window, feature index) -> [counts, sums, q, missing, min, max]
        values: dict = {}  # (window, feature index) -> {value: count}; None = missing
        held = 0
        for batch in batches:
            if not batch.num_rows:
                continue
            w = batch.column(0).to_numpy(zero_copy_only=False)
            for window in (0, 1) if w.min() != w.max() else (int(w[0]),):
                part = batch if w.min() == w.max() else batch.filter(pa.array(w == window))
                self._binned(part, window, binners, acc)
                held += self._values(part, window, values)
            if held > self.FLUSH_VALUES:
                yield self._table(acc, values)
                acc, values, held = {}, {}, 0
        if acc or values:
            yield self._table(acc, values)

    def _binned(self, batch, window: int, binners: dict, acc: dict) -> None:
        names = batch.schema.names
        for i, _, _, center in self.binned:
            x = batch.column(names.index(f"__c{i}")).to_numpy(zero_copy_only=False)
            bad = np.isnan(x)
            missing = int(np.count_nonzero(bad))
            if missing:
                x = x[~bad]
            binner = binners[i]
            slot = acc.get((window, i))
            if slot is None:
                slot = acc[(window, i)] = [
                    np.zeros(binner.bins, np.int64),
                    np.zeros(binner.bins),
                    0.0,
                    0,
                    math.inf,
                    -math.inf,
                ]
            slot[3] += missing
            if not len(x):
                continue
            b = binner(x)
            slot[0] += np.bincount(b, minlength=binner.bins)
            slot[1] += np.bincount(b, weights=x, minlength=binner.bins)
            d = x - center
            slot[2] += float(np.dot(d, d))
            slot[4], slot[5] = min(slot[4], float(x.min())), max(slot[5], float(x.max()))

    def _values(self, batch, window: int, values: dict) -> int:
        import pyarrow.compute as pc

        names, added = batch.schema.names, 0
        for i, _, numeric, _ in self.by_value:
            counts = pc.value_counts(batch.column(names.index(f"__c{i}")))
            seen = values.setdefault((window, i), {})
            before = len(seen)
            for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
                if numeric and value is not None and math.isnan(value):
                    value = None
                seen[value] = seen.get(value, 0) + n
            added += len(seen) - before
        return added

    def _table(self, acc: dict, values: dict):
        import pyarrow as pa

        rows: dict[str, list] = {c: [] for c in COLUMNS}

        def add(w, f, b, v, n, s, q, lo, hi):
            for key, value in zip(COLUMNS, (w, f, b, v, n, s, q, lo, hi)):
                rows[key].append(value)

        for (w, f), (counts, sums, q, missing, lo, hi) in acc.items():
            if missing:
                add(w, f, MISSING_BIN, None, missing, None, None, None, None)
            last = len(counts) - 1
            first = True
            for b in np.flatnonzero(counts):
                b = int(b)
                add(
                    w, f, b, None, int(counts[b]), float(sums[b]), q if first else 0.0,
                    lo if b == 0 else None, hi if b == last else None,
                )  # fmt: skip
                first = False
        kinds = {i: (numeric, integral) for i, _, numeric, integral in self.by_value}
        for (w, f), seen in values.items():
            numeric, integral = kinds[f]
            for value, n in seen.items():
                if value is None:
                    add(w, f, MISSING_BIN, None, n, None, None, None, None)
                elif numeric:
                    add(w, f, None, spark_string(value, integral), n, value * n, None, value, value)
                else:
                    add(w, f, None, value, n, None, None, None, None)
        return pa.RecordBatch.from_pydict(rows, schema=_arrow_schema())


def _arrow_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("__w", pa.int32()),
            ("f", pa.int32()),
            ("b", pa.int32()),
            ("v", pa.string()),
            ("n", pa.int64()),
            ("s", pa.float64()),
            ("q", pa.float64()),
            ("lo", pa.float64()),
            ("hi", pa.float64()),
        ]
    )


def spark_string(value: float, integral: bool) -> str:
    """The value as Spark casts a number to a string: `5` for an integral column, Java's `5.0`, `1.0E7`,
    `1.0E-4` for a double."""
    if integral:
        return str(int(value))
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = repr(float(value))
        return text if "e" not in text else f"{value:.1f}"
    mantissa, exponent = np.format_float_scientific(value, unique=True, trim="0").split("e")
    return f"{mantissa}E{int(exponent)}"
