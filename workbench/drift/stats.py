"""Drift statistics at Spark scale: a current window against a reference window.

The Spark path reads the windows a fixed number of times, whatever the row or feature count:

0. a count of the reference window;
1. a uniform sample of at most about `edge_sample` reference rows, whose quantiles (numpy, on the
   driver) are the bin edges of each numerical feature. Edges from a sample are still valid bins:
   every count below is exact. (Spark's `percentile_approx` at a useful accuracy cost more than the
   whole of pass 2 in `benchmarks/bench_drift.py`; a bounded sample costs a fraction of a scan.)
2. one aggregation over both windows: for every (window, feature, bin or category) a count, a sum,
   a sum of squares, a minimum and a maximum; categories beyond the `top_k` most frequent are folded
   into `__other__` inside Spark. (Binned and categorical features are two aggregations over
   disjoint columns, so each column is still read once.)

Only those aggregates reach the driver (at most 2 x features x (resolution + 3) rows plus
2 x (top_k + 1) per categorical feature), so driver memory does not grow with the row count. From them:
PSI and Jensen-Shannon distance on `bins` reference-quantile bins, a Wasserstein distance on the finer
`resolution` bins (normalised by the reference standard deviation, as Evidently does), and a
chi-square test for categorical features.

A numerical feature whose reference has at most 20 distinct values (a 0/1 flag, a code, an hour) is
counted by value, as Evidently does, under either binning: one quantile bin would hide a moved mean.
`binning="sturges"` bins the other numerical features like Evidently does for PSI and Jensen-Shannon
(equal-width bins over the range of both windows, Sturges' count), so the two agree to float
precision on the same data.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DriftError

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
]

STATUSES = ("ok", "warn", "alert")
# method -> (kinds it applies to, whether a LOW score means drift (p-values))
METHODS: dict[str, tuple[frozenset[str], bool]] = {
    "psi": (frozenset({"numerical", "categorical"}), False),
    "jensenshannon": (frozenset({"numerical", "categorical"}), False),
    "wasserstein": (frozenset({"numerical"}), False),
    "chisquare": (frozenset({"categorical"}), True),
}
BINNINGS = ("quantile", "sturges")
OTHER = "__other__"
MISSING_BIN = -1
EVIDENTLY_DISCRETE_MAX = 20  # Evidently bins a numerical column by value counts up to this many distinct values
_NUMERIC_TYPES = ("byte", "short", "int", "long", "float", "double", "decimal", "bigint", "smallint", "tinyint")


# ---- thresholds and status -------------------------------------------------------------------------
@dataclass(frozen=True)
class Thresholds:
    """What counts as drift, and when a run is `warn` or `alert`.

    A feature drifts when its score under its kind's method reaches `feature[method]` (for
    `chisquare`, a p-value, when it falls below). The run's status comes from the share of drifted
    features and, when a model is monitored, the drop of AUC from training (see `monitor`).
    """

    numerical_method: str = "wasserstein"  # Evidently's default for large numerical columns
    categorical_method: str = "jensenshannon"  # Evidently's default for large categorical columns
    feature: Mapping[str, float] = field(
        default_factory=lambda: {"psi": 0.1, "jensenshannon": 0.1, "wasserstein": 0.1, "chisquare": 0.05}
    )
    share_warn: float = 0.2  # share of drifted features that makes the run `warn`
    share_alert: float = 0.5  # ... and `alert`
    auc_drop_warn: float = 0.02  # AUC at training (else on the reference window) minus AUC now: `warn`
    auc_drop_alert: float = 0.05  # ... and `alert`

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Thresholds:
        """Thresholds from a notebook parameter; unknown keys and bad values raise DriftError."""
        if values is None:
            return cls()
        if isinstance(values, Thresholds):
            return values
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DriftError(
                f"thresholds: unknown key(s) {', '.join(unknown)}. Known keys: {', '.join(sorted(known))}."
            )
        merged = dict(values)
        if "feature" in merged:
            merged["feature"] = {**cls().feature, **dict(merged["feature"])}
        result = cls(**merged)
        result.validate()
        return result

    def validate(self) -> None:
        for name, kind in (("numerical_method", "numerical"), ("categorical_method", "categorical")):
            method = getattr(self, name)
            if method not in METHODS or kind not in METHODS[method][0]:
                allowed = sorted(m for m, (kinds, _) in METHODS.items() if kind in kinds)
                raise DriftError(f"thresholds.{name}: expected one of {', '.join(allowed)}, found '{method}'.")
        for method, value in self.feature.items():
            if method not in METHODS:
                raise DriftError(f"thresholds.feature: unknown method '{method}'. Known: {', '.join(METHODS)}.")
            if not isinstance(value, (int, float)) or value < 0:
                raise DriftError(
                    f"thresholds.feature.{method}: expected a non-negative number, found a {type(value).__name__}."
                )
        for lo, hi in (("share_warn", "share_alert"), ("auc_drop_warn", "auc_drop_alert")):
            if not 0 <= getattr(self, lo) <= getattr(self, hi):
                raise DriftError(f"thresholds: expected 0 <= {lo} <= {hi}.")

    def method_for(self, kind: str) -> str:
        return self.numerical_method if kind == "numerical" else self.categorical_method

    def is_drift(self, method: str, score: float | None) -> bool:
        if score is None or (isinstance(score, float) and math.isnan(score)):
            return False
        low_is_drift = METHODS[method][1]
        limit = self.feature[method]
        return score < limit if low_is_drift else score >= limit

    def share_status(self, share: float) -> str:
        return "alert" if share >= self.share_alert else "warn" if share >= self.share_warn else "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["feature"] = dict(self.feature)
        return d


def worst_status(*statuses: str | None) -> str:
    """The most severe of the given statuses (`None` entries are ignored)."""
    known = [s for s in statuses if s]
    for s in known:
        if s not in STATUSES:
            raise DriftError(f"status: expected one of {', '.join(STATUSES)}, found '{s}'.")
    return max(known, key=STATUSES.index) if known else "ok"


# ---- results ---------------------------------------------------------------------------------------
@dataclass
class FeatureDrift:
    """Drift of one feature. Scores that do not apply to the feature's kind are None."""

    feature: str
    kind: str  # "numerical" | "categorical"
    method: str  # the method that decides `drifted`
    score: float
    threshold: float
    drifted: bool
    psi: float
    jensenshannon: float
    wasserstein: float | None  # normalised by the reference standard deviation
    chisquare_p: float | None
    reference_count: int  # non-missing values
    current_count: int
    reference_missing: float  # share of rows where the feature is missing
    current_missing: float
    reference_mean: float | None = None
    current_mean: float | None = None
    bins: int = 0  # bins (numerical) or categories incl. __other__ (categorical) used for PSI/JS


@dataclass
class DriftReport:
    """Per-feature drift of a current window against a reference window, and the run's status."""

    features: list[FeatureDrift]
    reference_rows: int
    current_rows: int
    thresholds: Thresholds
    binning: str
    histograms: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def share_drifted(self) -> float:
        return len(self.drifted) / len(self.features) if self.features else 0.0

    @property
    def status(self) -> str:
        return self.thresholds.share_status(self.share_drifted)

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == name:
                return f
        raise DriftError(
            f"No drift result for feature '{name}'. Features: {', '.join(f.feature for f in self.features)}."
        )

    def table(self) -> pd.DataFrame:
        """One row per feature: drifted ones first, then by PSI (comparable across kinds)."""
        import pandas as pd

        df = pd.DataFrame([asdict(f) for f in self.features])
        return df.sort_values(["drifted", "psi"], ascending=[False, False], ignore_index=True)

    def metrics(self, prefix: str = "drift") -> dict[str, float]:
        """Flat metric name -> value, for `workbench.reports.publish`."""
        out = {
            f"{prefix}.share_drifted": self.share_drifted,
            f"{prefix}.n_drifted": float(len(self.drifted)),
            f"{prefix}.reference_rows": float(self.reference_rows),
            f"{prefix}.current_rows": float(self.current_rows),
        }
        for f in self.features:
            out[f"{prefix}.{f.method}.{f.feature}"] = float(f.score)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "share_drifted": self.share_drifted,
            "drifted": self.drifted,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "binning": self.binning,
            "thresholds": self.thresholds.to_dict(),
            "features": [asdict(f) for f in self.features],
        }

    def plot(self, features: Sequence[str] | None = None, top: int = 6):
        """A matplotlib figure of reference vs current distributions (default: the most drifted features)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        names = list(features) if features else list(self.table()["feature"][:top])
        fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.2 * max(1, len(names))), squeeze=False)
        for ax, name in zip(axes[:, 0], names):
            h = self.histograms[name]
            x = np.arange(len(h))
            ax.bar(x - 0.2, h["reference"], width=0.4, label="reference")
            ax.bar(x + 0.2, h["current"], width=0.4, label="current")
            ax.set_xticks(x, h["label"], rotation=45, ha="right", fontsize=7)
            fd = self.feature(name)
            ax.set_title(f"{name}: {fd.method} {fd.score:.3g}{' (drift)' if fd.drifted else ''}", fontsize=9)
        axes[0, 0].legend(fontsize=8)
        fig.tight_layout()
        return fig


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


# ---- binning helpers -------------------------------------------------------------------------------
def bin_index(edges: Sequence[float], x: float) -> int:
    """Bin of x for sorted distinct edges e0..em (m >= 1): 0 below e0, i in 1..m for
    e(i-1) <= x < e(i) (the last inner bin closed at em), m+1 above em."""
    if x < edges[0]:
        return 0
    if x > edges[-1]:
        return len(edges)
    return 1 + min(bisect_right(edges, x, 1, len(edges) - 1) - 1, max(len(edges) - 2, 0))


def _splits(edges: Sequence[float]) -> list[float]:
    """Bucketizer splits whose buckets equal `bin_index(edges, x)` (Bucketizer's last bucket is closed)."""
    return [-math.inf, *[float(e) for e in edges[:-1]], float(np.nextafter(edges[-1], np.inf)), math.inf]


def _distinct_edges(values: Iterable[float]) -> list[float]:
    """Sorted distinct edges, at least two (a constant column gets [v, next float after v])."""
    edges = sorted(set(values))
    return edges if len(edges) > 1 else [edges[0], float(np.nextafter(edges[0], np.inf))]


def _sturges_edges(lo: float, hi: float, n: int) -> list[float]:
    """np.histogram_bin_edges(data, bins="sturges") from the data's range and size alone."""
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5  # numpy's rule for a constant column
        return list(np.linspace(lo, hi, 2))
    width = (hi - lo) / (math.log2(n) + 1.0)
    k = int(math.ceil((hi - lo) / width))
    return list(np.linspace(lo, hi, k + 1, endpoint=True))


def _fill_zeroes(p: np.ndarray) -> np.ndarray:
    """Evidently's rule for empty bins in PSI: a tenth of a thousandth, or a millionth of the smallest share."""
    p = p.astype(float).copy()
    nonzero = p[p != 0]
    if len(nonzero) and (p == 0).any():
        smallest = nonzero.min()
        p[p == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return p


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    r, c = _fill_zeroes(ref / ref.sum()), _fill_zeroes(cur / cur.sum())
    return float(np.sum((r - c) * np.log(r / c)))


def _jensenshannon(ref: np.ndarray, cur: np.ndarray) -> float:
    from scipy.spatial import distance

    return float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum()))


def _chisquare_p(ref: np.ndarray, cur: np.ndarray) -> float:
    """Evidently's chi-square: current counts against reference counts scaled to the current total."""
    from scipy.stats import chisquare

    expected = ref * (cur.sum() / ref.sum())
    if (expected == 0).any():
        return 0.0 if cur[expected == 0].sum() > 0 else float(chisquare(cur[expected > 0], expected[expected > 0])[1])
    if len(cur) < 2:
        return 1.0
    return float(chisquare(cur, expected)[1])


def _wasserstein(
    lo: np.ndarray, hi: np.ndarray, ref_n: np.ndarray, ref_s: np.ndarray, cur_n: np.ndarray, cur_s: np.ndarray
) -> float:
    """W1 = integral |F_ref - F_cur| from per-bin counts and sums.

    Within bin [a, b] the integral of a CDF F is F(a-)(b - a) + p b - S (p: the bin's mass, S: the
    bin's sum over the total count), which is exact; summing |integral of (F_ref - F_cur)| per bin is
    exact unless the CDFs cross inside a bin, and a lower bound otherwise.
    """
    rn, cn = ref_n.sum(), cur_n.sum()
    rp, cp = ref_n / rn, cur_n / cn
    rs, cs = ref_s / rn, cur_s / cn
    r_before = np.concatenate([[0.0], np.cumsum(rp)[:-1]])
    c_before = np.concatenate([[0.0], np.cumsum(cp)[:-1]])
    width = hi - lo
    d = (r_before - c_before) * width + (rp - cp) * hi - (rs - cs)
    return float(np.abs(d).sum())


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
    """Drift of every feature of `current` against `reference` (two Spark DataFrames), in two passes.

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
        _reference_pass(ref, cur, numerical, binning, bins, resolution, edge_sample, seed)
        if numerical
        else _Edges({}, {}, {})
    )
    table = _histogram_pass(ref.unionByName(cur), numerical, categorical, edges.fine, top_k, edges.center)
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
            fd, hist = _numeric_drift(c, present, fine[c], coarse[c], ref_std[c], thresholds)
        else:
            fd, hist = _categorical_drift(c, kind, present, ref_std.get(c), thresholds)
        fd.reference_missing = float(miss.get(0, 0)) / ref_rows
        fd.current_missing = float(miss.get(1, 0)) / cur_rows
        if fd.reference_count == 0 or fd.current_count == 0:
            raise DriftError(
                f"feature '{c}' has no values in the {'reference' if fd.reference_count == 0 else 'current'} window."
            )
        results.append(fd)
        histograms[c] = hist
    return DriftReport(results, ref_rows, cur_rows, thresholds, binning, histograms)


@dataclass
class _Edges:
    fine: dict[str, list[float]]  # numerical features binned by edges (the others by value)
    coarse: dict[str, list[float]]
    std: dict[str, float]  # reference population standard deviation per numerical feature
    center: dict[str, float] = field(default_factory=dict)  # a typical value (sample median): shift for sums of squares


def _reference_pass(
    ref: DataFrame,
    cur: DataFrame,
    numerical: list[str],
    binning: str,
    bins: int,
    resolution: int,
    edge_sample: int,
    seed: int,
) -> _Edges:
    """Pass 1. Quantile binning: a count of the reference, then its quantiles from a uniform sample of
    at most about `edge_sample` rows (numpy on the driver: memory bounded by the sample, not the data).
    Edges from a sample are valid bins, and the counts in them (pass 2) are exact; the standard
    deviation comes exactly from pass 2's sums. Sturges binning: one aggregation over both windows for
    their range and size and the reference's distinct count and standard deviation, like Evidently."""
    from pyspark.sql import functions as F

    edges = _Edges({}, {}, {})
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
            edges.fine[c] = _distinct_edges(q)
            edges.coarse[c] = _distinct_edges(q[:: resolution // bins])
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
            F.approx_count_distinct(rx, 0.01).alias(f"d{i}"),
        ]
    first = ref.unionByName(cur).agg(*aggs).first()
    if not first["__ref_rows"]:
        raise DriftError("the reference window has no rows: check its filter (reference_where).")
    for i, c in enumerate(numerical):
        edges.std[c] = float(first[f"s{i}"] or 0.0)
        if not first[f"n{i}"]:
            raise DriftError(f"feature '{c}' has no values in the reference window.")
        if first[f"d{i}"] > EVIDENTLY_DISCRETE_MAX:
            edges.fine[c] = edges.coarse[c] = _sturges_edges(
                float(first[f"lo{i}"]), float(first[f"hi{i}"]), int(first[f"nb{i}"])
            )
            edges.center[c] = 0.5 * (float(first[f"lo{i}"]) + float(first[f"hi{i}"]))
    return edges


COLUMNS = ["__w", "f", "b", "v", "n", "s", "q", "lo", "hi"]


def _histogram_pass(
    both: DataFrame,
    numerical: list[str],
    categorical: list[str],
    fine: dict[str, list[float]],
    top_k: int,
    center: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Pass 2 over both windows: per (window `__w`, feature index `f`, bin `b` or category `v`) the
    count `n`, sum `s`, sum of squares around the feature's center `q`, min `lo` and max `hi`.

    Binned features and features counted by value are two aggregations over disjoint columns, so
    together they still read each column once: binned ones group on fixed-width keys (Spark's fast
    hash map), the others on the value, with categories beyond the top_k of a feature (by count over
    both windows) folded into OTHER inside Spark before anything reaches the driver."""
    import pandas as pd

    names = numerical + categorical
    binned = [c for c in numerical if c in fine]
    by_value = [c for c in names if c not in fine]
    parts = []
    if binned:
        parts += _binned_counts(both, [(names.index(c), c) for c in binned], fine, center or {})
    if by_value:
        parts += _value_counts(both, [(names.index(c), c) for c in by_value], set(numerical), top_k)
    return pd.DataFrame([r.asDict() for r in parts], columns=COLUMNS)


def _binned_counts(
    both: DataFrame, features: list[tuple[int, str]], fine: dict[str, list[float]], center: Mapping[str, float]
) -> list:
    """Bins from Spark ML's Bucketizer (a binary search per value in the JVM), unpivoted into
    (feature, bin) pairs and aggregated in one hash aggregation."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    data = both.select("__w", *[F.col(c).cast("double").alias(f"__c{i}") for i, c in features])
    cols = [f"__c{i}" for i, _ in features]
    data = Bucketizer(
        splitsArray=[_splits(fine[c]) for _, c in features],
        inputCols=cols,
        outputCols=[f"{col}b" for col in cols],
        handleInvalid="keep",
    ).transform(data)
    rows = []
    for i, c in features:
        x = F.col(f"__c{i}")
        dev = x - F.lit(float(center.get(c, 0.0)))
        b = F.when(x.isNull() | F.isnan(x), F.lit(MISSING_BIN)).otherwise(F.col(f"__c{i}b").cast("int"))
        rows.append(F.struct(F.lit(i).alias("f"), b.alias("b"), x.alias("x"), (dev * dev).alias("x2")))
    agg = (
        data.select("__w", F.inline(F.array(*rows)))
        .groupBy("__w", "f", "b")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("x").alias("s"),
            F.sum("x2").alias("q"),
            F.min("x").alias("lo"),
            F.max("x").alias("hi"),
        )
        .select("__w", "f", "b", F.lit(None).cast("string").alias("v"), "n", "s", "q", "lo", "hi")
    )
    return agg.collect()


def _value_counts(both: DataFrame, features: list[tuple[int, str]], numerical: set[str], top_k: int) -> list:
    """Counts per value, unpivoted into (feature, value) pairs; the top_k values of each feature kept."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rows = []
    for i, c in features:
        col = F.col(c)
        x = col.cast("double") if c in numerical else F.lit(None).cast("double")
        missing = (x.isNull() | F.isnan(x)) if c in numerical else col.isNull()
        rows.append(
            F.struct(
                F.lit(i).alias("f"),
                F.when(missing, F.lit(MISSING_BIN)).cast("int").alias("b"),
                F.when(~missing, col.cast("string")).alias("v"),
                x.alias("x"),
            )
        )
    agg = (
        both.select("__w", F.inline(F.array(*rows)))
        .groupBy("__w", "f", "b", "v")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("x").alias("s"), F.min("x").alias("lo"), F.max("x").alias("hi"))
    )
    rank = F.dense_rank().over(Window.partitionBy("f").orderBy(F.desc("tot"), F.asc_nulls_first("b"), F.asc("v")))
    agg = (
        agg.withColumn("tot", F.sum("n").over(Window.partitionBy("f", "b", "v")))
        .withColumn("rk", rank)
        .withColumn("v", F.when(F.col("v").isNotNull() & (F.col("rk") > top_k), F.lit(OTHER)).otherwise(F.col("v")))
        .groupBy("__w", "f", "b", "v")
        .agg(F.sum("n").alias("n"), F.sum("s").alias("s"), F.min("lo").alias("lo"), F.max("hi").alias("hi"))
        .select("__w", "f", "b", "v", "n", "s", F.lit(None).cast("double").alias("q"), "lo", "hi")
    )
    return agg.collect()


def _window_arrays(present: pd.DataFrame, key: str, keys: list) -> dict[int, dict[str, np.ndarray]]:
    import pandas as pd

    out = {}
    for w in (0, 1):
        part = present[present["__w"] == w].set_index(key)
        numbers = {
            col: pd.to_numeric(part[col], errors="coerce").astype(float).reindex(keys) for col in ("n", "s", "lo", "hi")
        }
        out[w] = {
            "n": numbers["n"].fillna(0.0).to_numpy(),
            "s": numbers["s"].fillna(0.0).to_numpy(),
            "lo": numbers["lo"].to_numpy(),
            "hi": numbers["hi"].to_numpy(),
        }
    return out


def _numeric_drift(
    name: str, present: pd.DataFrame, fine: list[float], coarse: list[float], std: float, thresholds: Thresholds
) -> tuple[FeatureDrift, pd.DataFrame]:
    import pandas as pd

    keys = list(range(len(fine) + 1))  # bin 0 below the first edge .. bin len(fine) above the last
    w = _window_arrays(present, "b", keys)
    rn, cn = w[0]["n"], w[1]["n"]
    # Wasserstein on the fine bins: extents from the edges, outer bins from the observed extremes
    lo = np.array([np.nanmin([w[0]["lo"][0], w[1]["lo"][0], fine[0]])] + fine, dtype=float)
    hi = np.array(fine + [np.nanmax([w[0]["hi"][-1], w[1]["hi"][-1], fine[-1]])], dtype=float)
    wd = _wasserstein(lo, hi, rn, w[0]["s"], cn, w[1]["s"]) / max(std, 0.001)
    # PSI / JS on the coarse bins (each fine bin lies inside one coarse bin)
    to_coarse = [0] + [bin_index(coarse, e) for e in fine[:-1]] + [len(coarse)]
    q = len(coarse)
    rc, cc = np.zeros(q + 1), np.zeros(q + 1)
    np.add.at(rc, to_coarse, rn)
    np.add.at(cc, to_coarse, cn)
    keep = np.ones(q + 1, dtype=bool)
    for outer in (0, q):  # outer bins count only when a window has values there
        keep[outer] = rc[outer] + cc[outer] > 0
    rc, cc = rc[keep], cc[keep]
    labels = (
        ["< " + _fmt(coarse[0])]
        + [f"[{_fmt(a)}, {_fmt(b)})" for a, b in zip(coarse[:-1], coarse[1:])]
        + ["> " + _fmt(coarse[-1])]
    )
    labels = [lab for lab, k in zip(labels, keep) if k]
    psi, js = _psi(rc, cc), _jensenshannon(rc, cc)
    method = thresholds.numerical_method
    score = {"psi": psi, "jensenshannon": js, "wasserstein": wd}[method]
    fd = FeatureDrift(
        name,
        "numerical",
        method,
        score,
        thresholds.feature[method],
        thresholds.is_drift(method, score),
        psi,
        js,
        wd,
        None,
        int(rn.sum()),
        int(cn.sum()),
        0.0,
        0.0,
        reference_mean=float(w[0]["s"].sum() / rn.sum()) if rn.sum() else None,
        current_mean=float(w[1]["s"].sum() / cn.sum()) if cn.sum() else None,
        bins=int(len(rc)),
    )
    hist = pd.DataFrame({"label": labels, "reference": rc / rc.sum(), "current": cc / cc.sum()})
    return fd, hist


def _categorical_drift(
    name: str, kind: str, present: pd.DataFrame, std: float | None, thresholds: Thresholds
) -> tuple[FeatureDrift, pd.DataFrame]:
    import pandas as pd

    totals = present.groupby("v")["n"].sum().sort_values(ascending=False, kind="stable")
    keys = [k for k in totals.index if k != OTHER] + ([OTHER] if OTHER in totals.index else [])
    w = _window_arrays(present, "v", keys)
    rn, cn = w[0]["n"], w[1]["n"]
    psi, js, p = _psi(rn, cn), _jensenshannon(rn, cn), _chisquare_p(rn, cn) if kind == "categorical" else None
    wd = None
    if kind == "numerical":  # a discrete numerical feature: point masses at the values
        values = np.where(rn + cn > 0, (w[0]["s"] + w[1]["s"]) / np.maximum(rn + cn, 1), 0.0)
        order = np.argsort(values)
        v, r, c = values[order], (rn / rn.sum())[order], (cn / cn.sum())[order]
        wd = float(np.sum(np.abs(np.cumsum(r) - np.cumsum(c))[:-1] * np.diff(v))) / max(std or 0.0, 0.001)
    method = thresholds.method_for(kind)
    score = {"psi": psi, "jensenshannon": js, "wasserstein": wd, "chisquare": p}[method]
    fd = FeatureDrift(
        name,
        kind,
        method,
        score,
        thresholds.feature[method],
        thresholds.is_drift(method, score),
        psi,
        js,
        wd,
        p,
        int(rn.sum()),
        int(cn.sum()),
        0.0,
        0.0,
        bins=len(keys),
    )
    if kind == "numerical":
        fd.reference_mean = float(w[0]["s"].sum() / rn.sum()) if rn.sum() else None
        fd.current_mean = float(w[1]["s"].sum() / cn.sum()) if cn.sum() else None
    hist = pd.DataFrame({"label": [str(k) for k in keys], "reference": rn / rn.sum(), "current": cn / cn.sum()})
    return fd, hist


def _fmt(x: float) -> str:
    return f"{x:.4g}"


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
