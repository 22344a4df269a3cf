"""Experiment (issue 19): the drift histograms computed in the JVM, without the Python round-trip.

`bench_drift.py --histograms <engine>` swaps `workbench.drift.stats.histogram_table` (one `mapInArrow` pass) for
one of these, which return the same table (`workbench.drift.histograms.COLUMNS`), so everything else - the edges,
the merge into statistics - is unchanged and the figures compare the histogram pass alone:

- `case`: per binned feature its bin as a Spark expression (a binary search over the splits as nested CASE
  WHEN, missing apart), then ONE aggregation per window (`groupBy("__w")`: two groups) of conditional sums, per
  feature and bin a count and a sum, plus the missing count, the sum of squares about the center, the minimum and
  the maximum. One row per input row, no unpivot. Features counted by value (categories, few distinct numbers)
  are a second aggregation over (window, feature, value).
- `vector`: the bins as sparse one-hot vectors (`Bucketizer` with `splitsArray`, `OneHotEncoder` told the sizes
  by the column's ML metadata so it does not scan, `Interaction` with the value for the per-bin sums,
  `VectorAssembler`), summed per window by `Summarizer` (sparse: a few non-zeros per row); the same second
  aggregation for the features counted by value.

Both produce exactly the mapInArrow table's counts (the sums up to float rounding order); `python
benchmarks/drift_jvm.py --check` checks that on a small window pair.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.drift.histograms import _INTEGRAL, COLUMNS, spark_string
from workbench.drift.kernels import MISSING_BIN, OTHER, inner_splits


def _inputs(both, numerical, categorical, fine):
    from pyspark.sql import functions as F

    names = numerical + categorical
    types = {f.name: f.dataType.simpleString() for f in both.schema.fields}
    binned = [(i, c, list(fine[c])) for i, c in enumerate(names) if c in fine]
    by_value = [
        (i, c, c in numerical, types[c].split("(")[0] in _INTEGRAL) for i, c in enumerate(names) if c not in fine
    ]
    cols = [F.col("__w").cast("int").alias("__w")]
    for i, c, _ in binned:
        x = F.col(c).cast("double")
        cols.append(F.when(~F.isnan(x), x).alias(f"__c{i}"))  # NaN -> null: missing
    for i, c, num, _ in by_value:
        x = F.col(c).cast("double")
        cols.append((F.when(~F.isnan(x), x) if num else F.col(c).cast("string")).alias(f"__c{i}"))
    return both.select(*cols), binned, by_value


def _bin_expr(x, splits: np.ndarray):
    """The number of splits <= x, as a balanced tree of CASE WHEN (x not null, not NaN)."""
    from pyspark.sql import functions as F

    def tree(lo: int, hi: int):
        if lo == hi:
            return F.lit(lo)
        mid = (lo + hi + 1) // 2
        return F.when(x >= F.lit(float(splits[mid - 1])), tree(mid, hi)).otherwise(tree(lo, mid - 1))

    return F.when(x.isNotNull(), tree(0, len(splits)))


def _value_table(data, by_value) -> list[dict]:
    """Features counted by value: one aggregation over (window, feature, value) of the exploded by-value columns."""
    from pyspark.sql import functions as F

    if not by_value:
        return []
    pairs = F.array(
        *[
            F.struct(
                F.lit(i).alias("f"),
                (F.col(f"__c{i}").cast("string") if num else F.col(f"__c{i}")).alias("v"),
                (F.col(f"__c{i}") if num else F.lit(None).cast("double")).alias("x"),
            )
            for i, _, num, _ in by_value
        ]
    )
    rows = (
        data.select("__w", F.explode(pairs).alias("p"))
        .groupBy("__w", F.col("p.f").alias("f"), F.col("p.v").alias("v"))
        .agg(F.count(F.lit(1)).alias("n"), F.first("p.x", ignorenulls=True).alias("x"))
        .collect()
    )
    kinds = {i: (num, integral) for i, _, num, integral in by_value}
    out = []
    for r in rows:
        num, integral = kinds[r["f"]]
        if r["v"] is None:
            out.append(dict(__w=r["__w"], f=r["f"], b=MISSING_BIN, v=None, n=r["n"], s=None, q=None, lo=None, hi=None))
        elif num:
            x = float(r["x"])
            out.append(
                dict(
                    __w=r["__w"],
                    f=r["f"],
                    b=None,
                    v=spark_string(x, integral),
                    n=r["n"],
                    s=x * r["n"],
                    q=None,
                    lo=x,
                    hi=x,
                )
            )
        else:
            out.append(dict(__w=r["__w"], f=r["f"], b=None, v=r["v"], n=r["n"], s=None, q=None, lo=None, hi=None))
    return out


def _binned_rows(w, i, counts, sums, missing, q, lo, hi) -> list[dict]:
    out = []
    if missing:
        out.append(dict(__w=w, f=i, b=MISSING_BIN, v=None, n=int(missing), s=None, q=None, lo=None, hi=None))
    last, first = len(counts) - 1, True
    for b in np.flatnonzero(counts):
        b = int(b)
        out.append(
            dict(
                __w=w, f=i, b=b, v=None, n=int(counts[b]), s=float(sums[b]), q=float(q) if first else 0.0,
                lo=float(lo) if b == 0 else None, hi=float(hi) if b == last else None,
            )
        )  # fmt: skip
        first = False
    return out


def _fold(rows: list[dict], top_k: int) -> pd.DataFrame:
    """The merge step of histogram_table, in pandas, with its ranking: per feature its (bin, value) keys by count
    over both windows (ties: bin nulls first, then value), and values ranked beyond top_k fold into OTHER."""
    table = pd.DataFrame(rows, columns=COLUMNS)
    by_key = table[table["b"].isna() | (table["b"] == MISSING_BIN)]
    by_key = by_key[by_key["f"].isin(table.loc[table["v"].notna(), "f"].unique())]
    if len(by_key):
        tot = by_key.groupby(["f", "b", "v"], dropna=False)["n"].sum().reset_index()
        tot = tot[tot["v"].notna()]  # the missing count takes no place among the top_k (as histogram_table)
        tot["bk"] = tot["b"].fillna(-(10**9))  # nulls first
        tot = tot.sort_values(["f", "n", "bk", "v"], ascending=[True, False, True, True], na_position="first")
        tot["rk"] = tot.groupby("f").cumcount() + 1
        fold = {(r.f, r.v) for r in tot.itertuples() if r.rk > top_k and isinstance(r.v, str)}
        if fold:
            mask = [(f, v) in fold for f, v in zip(table["f"], table["v"])]
            table.loc[mask, "v"] = OTHER
            keys = ["__w", "f", "b", "v"]
            table = (
                table.groupby(keys, dropna=False)
                .agg(
                    n=("n", "sum"),
                    s=("s", lambda x: x.sum(min_count=1)),
                    q=("q", lambda x: x.sum(min_count=1)),
                    lo=("lo", "min"),
                    hi=("hi", "max"),
                )
                .reset_index()[COLUMNS]
            )
    return table


def case_histogram_table(both, numerical, categorical, fine, top_k, center=None) -> pd.DataFrame:
    from pyspark.sql import functions as F

    data, binned, by_value = _inputs(both, numerical, categorical, fine)
    center = center or {}
    with_bins = data.select("*", *[_bin_expr(F.col(f"__c{i}"), inner_splits(e)).alias(f"__b{i}") for i, _, e in binned])
    aggs = []
    for i, c, e in binned:
        x, b, nb = F.col(f"__c{i}"), F.col(f"__b{i}"), len(e) + 1
        d = x - F.lit(float(center.get(c, 0.0)))
        aggs += [F.count_if(b == k).alias(f"n{i}_{k}") for k in range(nb)]
        aggs += [F.sum(F.when(b == k, x)).alias(f"s{i}_{k}") for k in range(nb)]
        aggs += [
            F.count_if(x.isNull()).alias(f"m{i}"),
            F.sum(d * d).alias(f"q{i}"),
            F.min(x).alias(f"lo{i}"),
            F.max(x).alias(f"hi{i}"),
        ]
    rows = []
    if binned:
        for r in with_bins.groupBy("__w").agg(*aggs).collect():
            for i, _, e in binned:
                nb = len(e) + 1
                counts = np.array([r[f"n{i}_{k}"] for k in range(nb)], dtype=np.int64)
                sums = np.array([r[f"s{i}_{k}"] or 0.0 for k in range(nb)])
                rows += _binned_rows(r["__w"], i, counts, sums, r[f"m{i}"], r[f"q{i}"] or 0.0, r[f"lo{i}"], r[f"hi{i}"])
    rows += _value_table(data, by_value)
    return _fold(rows, top_k)


def vector_histogram_table(both, numerical, categorical, fine, top_k, center=None) -> pd.DataFrame:
    from pyspark.ml.feature import Bucketizer, Interaction, OneHotEncoder, VectorAssembler
    from pyspark.ml.stat import Summarizer
    from pyspark.sql import functions as F

    data, binned, by_value = _inputs(both, numerical, categorical, fine)
    center = center or {}
    rows = []
    if binned:
        # null -> NaN, which Bucketizer(handleInvalid="keep") puts in an extra last bucket: the missing count
        prepared = data.select(
            "__w", *[F.coalesce(F.col(f"__c{i}"), F.lit(math.nan)).alias(f"__c{i}") for i, _, _ in binned]
        )
        splits = [[-math.inf, *inner_splits(e).tolist(), math.inf] for _, _, e in binned]
        bucketed = Bucketizer(
            splitsArray=splits,
            inputCols=[f"__c{i}" for i, _, _ in binned],
            outputCols=[f"__k{i}" for i, _, _ in binned],
            handleInvalid="keep",
        ).transform(prepared)
        sized = bucketed.select(
            "*",
            *[
                F.col(f"__k{i}").alias(
                    f"__n{i}", metadata={"ml_attr": {"type": "nominal", "num_vals": len(e) + 2, "name": f"__n{i}"}}
                )
                for i, _, e in binned
            ],
        )
        ohe = OneHotEncoder(
            inputCols=[f"__n{i}" for i, _, _ in binned], outputCols=[f"__o{i}" for i, _, _ in binned], dropLast=False
        ).fit(sized)
        encoded = ohe.transform(sized)
        for i, _, _ in binned:  # the value at its bin (NaN at the missing bucket: its sum is not used)
            encoded = Interaction(inputCols=[f"__o{i}", f"__c{i}"], outputCol=f"__x{i}").transform(encoded)
        vec = VectorAssembler(
            inputCols=[f"__o{i}" for i, _, _ in binned] + [f"__x{i}" for i, _, _ in binned],
            outputCol="__v",
            handleInvalid="keep",
        ).transform(encoded)
        extra = []
        for i, c, _ in binned:
            x = F.when(~F.isnan(F.col(f"__c{i}")), F.col(f"__c{i}"))
            d = x - F.lit(float(center.get(c, 0.0)))
            extra += [F.sum(d * d).alias(f"q{i}"), F.min(x).alias(f"lo{i}"), F.max(x).alias(f"hi{i}")]
        result = vec.groupBy("__w").agg(Summarizer.sum(F.col("__v")).alias("sum"), *extra).collect()
        sizes = [len(e) + 2 for _, _, e in binned]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        half = int(offsets[-1])
        for r in result:
            total = r["sum"].toArray()
            for j, (i, _, e) in enumerate(binned):
                nb = len(e) + 1
                counts = np.rint(total[offsets[j] : offsets[j] + nb]).astype(np.int64)
                missing = int(round(total[offsets[j] + nb]))
                sums = total[half + offsets[j] : half + offsets[j] + nb]
                rows += _binned_rows(r["__w"], i, counts, sums, missing, r[f"q{i}"] or 0.0, r[f"lo{i}"], r[f"hi{i}"])
    rows += _value_table(data, by_value)
    return _fold(rows, top_k)


ENGINES = {"case": case_histogram_table, "vector": vector_histogram_table}


def _check() -> None:
    """The engines' tables against the mapInArrow table on two months of the sample flights."""
    from pyspark.sql import functions as F

    from workbench.config import load_settings
    from workbench.data import load
    from workbench.drift import stats
    from workbench.drift.histograms import histogram_table, reference_edges
    from workbench.spark import get_spark

    settings = load_settings(spark_master="local[2]")
    spark = get_spark("drift-jvm-check", settings)
    numerical, categorical = ["dep_delay", "distance", "hour", "air_time"], ["carrier", "origin"]
    df = load("flights", columns=numerical + categorical + ["month"], settings=settings, spark=spark)
    ref = df.where("month = 1").drop("month").withColumn("__w", F.lit(0))
    cur = df.where("month = 7").drop("month").withColumn("__w", F.lit(1))
    edges = reference_edges(ref, cur, numerical, "quantile", 20, 100, 200_000, 42)
    both = ref.unionByName(cur)
    keys = ["__w", "f", "b", "v"]

    def norm(t):
        t = t.assign(v=t["v"].where(t["v"].notna(), "<null>").astype(str), b=t["b"].fillna(-99).astype(int))
        return t.sort_values(keys).reset_index(drop=True)

    base = norm(histogram_table(both, numerical, categorical, edges.fine, 5, edges.center))
    for name, fn in ENGINES.items():
        got = norm(fn(both, numerical, categorical, edges.fine, 5, edges.center))
        if len(got) != len(base):
            m = got.merge(base, on=keys, how="outer", indicator=True)
            print(m[m["_merge"] != "both"].to_string())
        assert len(got) == len(base), (name, len(got), len(base))
        assert (got[keys].to_numpy() == base[keys].to_numpy()).all(), name
        assert (got["n"].to_numpy() == base["n"].to_numpy()).all(), name
        for col in ("s", "q", "lo", "hi"):
            a, b = got[col].to_numpy(float), base[col].to_numpy(float)
            assert np.allclose(a, b, rtol=1e-9, atol=1e-6, equal_nan=True), (name, col)
        print(f"{name}: the same table as mapInArrow ({len(base)} rows)")
    ours = stats.compute_drift(ref.drop("__w"), cur.drop("__w"), numerical + categorical)
    stats.histogram_table = ENGINES["vector"]
    theirs = stats.compute_drift(ref.drop("__w"), cur.drop("__w"), numerical + categorical)
    assert [round(f.psi, 9) for f in ours.features] == [round(f.psi, 9) for f in theirs.features]
    print("compute_drift equal with the vector engine")


if __name__ == "__main__":
    _check()
