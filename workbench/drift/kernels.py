"""Drift statistics kernels: bins, and the per-feature scores from merged per-bin aggregates.

Pure numpy/scipy, no Spark: `bin_index` and `Binner` (the bin of one value / of many at once, the
same bins), the edges (quantile, Sturges), PSI, Jensen-Shannon, chi-square, the binned Wasserstein
distance, and `numeric_drift` / `categorical_drift`, which turn one feature's rows of the histogram
table (see `histograms.COLUMNS`) into a `FeatureDrift` and its plotted histogram.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .report import FeatureDrift, Thresholds

if TYPE_CHECKING:
    import pandas as pd

OTHER = "__other__"
MISSING_BIN = -1
EVIDENTLY_DISCRETE_MAX = 20  # Evidently bins a numerical column by value counts up to this many distinct values


# ---- binning helpers -------------------------------------------------------------------------------
def bin_index(edges: Sequence[float], x: float) -> int:
    """Bin of x for sorted distinct edges e0..em (m >= 1): 0 below e0, i in 1..m for
    e(i-1) <= x < e(i) (the last inner bin closed at em), m+1 above em."""
    if x < edges[0]:
        return 0
    if x > edges[-1]:
        return len(edges)
    return 1 + min(bisect_right(edges, x, 1, len(edges) - 1) - 1, max(len(edges) - 2, 0))


def inner_splits(edges: Sequence[float]) -> np.ndarray:
    """Splits s with `bin_index(edges, x)` == the number of splits <= x: e0 .. e(m-1) and the next float
    after em (so the last inner bin is closed at em)."""
    return np.array([*[float(e) for e in edges[:-1]], float(np.nextafter(edges[-1], np.inf))], dtype=float)


class Binner:
    """`bin_index` for a numpy array of values (no NaN) at once: `np.searchsorted(splits, x, "right")`,
    exactly, at a fraction of its cost.

    A binary search per value mispredicts a branch at every level. Instead the range of the splits is
    cut into `cells` equal cells, and a table gives, per cell, a lower bound of the bin of any value
    that lands in it (from the cell one below, so rounding in the cell arithmetic cannot overshoot);
    then `steps` vectorised passes of `b += x >= s[b]` climb to the bin (each pass moves at most one
    split up, and never past the bin). `steps` is the most splits within three adjacent cells, kept
    small by refining the cells; where splits crowd too much for that, it falls back to searchsorted.
    """

    MAX_CELLS = 1 << 16
    MAX_STEPS = 4

    def __init__(self, edges: Sequence[float]):
        s = inner_splits(edges)
        self.splits, self.bins = s, len(s) + 1
        self._padded = np.append(s, np.nan)  # x >= NaN is False: never past the last bin
        self.cells, self.steps, self._lower = 0, 0, np.zeros(0, dtype=np.intp)
        span = float(s[-1] - s[0])
        cells = 4 * len(s)
        ulp = float(np.spacing(max(abs(s[0]), abs(s[-1]))))
        while span > 0 and math.isfinite(span):
            width = span / cells
            if width < 1024 * ulp:  # cells near the float resolution: the cell arithmetic would not hold
                break
            bounds = s[0] + width * np.arange(-2, cells + 3)  # cell c (-1..cells) spans bounds[c+2]..bounds[c+3]
            counted = np.searchsorted(s, bounds, side="right")
            lower, upper = counted[:-3], counted[3:]  # splits <= the start of cell c-1, <= the end of cell c+1
            steps = int((upper - lower).max())
            if steps <= self.MAX_STEPS or 2 * cells > self.MAX_CELLS:
                if steps <= 2 * self.MAX_STEPS:
                    self.cells, self.steps, self._lower = cells, steps, lower.astype(np.intp)
                    self._origin, self._scale = float(s[0]), cells / span
                break
            cells *= 2

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.cells:
            return np.searchsorted(self.splits, x, side="right")
        with np.errstate(over="ignore", invalid="ignore"):
            t = (x - self._origin) * self._scale
        np.clip(t, -1.0, float(self.cells), out=t)
        b = self._lower[t.astype(np.intp) + 1]
        padded = self._padded
        for _ in range(self.steps):
            b += x >= padded[b]
        return b


def distinct_edges(values: Iterable[float]) -> list[float]:
    """Sorted distinct edges, at least two (a constant column gets [v, next float after v])."""
    edges = sorted(set(values))
    return edges if len(edges) > 1 else [edges[0], float(np.nextafter(edges[0], np.inf))]


def sturges_edges(lo: float, hi: float, n: int) -> list[float]:
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


def window_arrays(present: pd.DataFrame, key: str, keys: list) -> dict[int, dict[str, np.ndarray]]:
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


def numeric_drift(
    name: str, present: pd.DataFrame, fine: list[float], coarse: list[float], std: float, thresholds: Thresholds
) -> tuple[FeatureDrift, pd.DataFrame]:
    import pandas as pd

    keys = list(range(len(fine) + 1))  # bin 0 below the first edge .. bin len(fine) above the last
    w = window_arrays(present, "b", keys)
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
    fd = _feature_drift(name, "numerical", thresholds, _psi(rc, cc), _jensenshannon(rc, cc), wd, None, w, len(rc))
    hist = pd.DataFrame({"label": labels, "reference": rc / rc.sum(), "current": cc / cc.sum()})
    return fd, hist


def categorical_drift(
    name: str, kind: str, present: pd.DataFrame, std: float | None, thresholds: Thresholds
) -> tuple[FeatureDrift, pd.DataFrame]:
    import pandas as pd

    totals = present.groupby("v")["n"].sum().sort_values(ascending=False, kind="stable")
    keys = [k for k in totals.index if k != OTHER] + ([OTHER] if OTHER in totals.index else [])
    w = window_arrays(present, "v", keys)
    rn, cn = w[0]["n"], w[1]["n"]
    psi, js, p = _psi(rn, cn), _jensenshannon(rn, cn), _chisquare_p(rn, cn) if kind == "categorical" else None
    wd = None
    if kind == "numerical":  # a discrete numerical feature: point masses at the values
        values = np.where(rn + cn > 0, (w[0]["s"] + w[1]["s"]) / np.maximum(rn + cn, 1), 0.0)
        order = np.argsort(values)
        v, r, c = values[order], (rn / rn.sum())[order], (cn / cn.sum())[order]
        wd = float(np.sum(np.abs(np.cumsum(r) - np.cumsum(c))[:-1] * np.diff(v))) / max(std or 0.0, 0.001)
    fd = _feature_drift(name, kind, thresholds, psi, js, wd, p, w, len(keys))
    hist = pd.DataFrame({"label": [str(k) for k in keys], "reference": rn / rn.sum(), "current": cn / cn.sum()})
    return fd, hist


def _feature_drift(name: str, kind: str, thresholds: Thresholds, psi, js, wd, p, w, bins: int) -> FeatureDrift:
    """The FeatureDrift of one feature from its scores (p: chi-square, categorical only) and window arrays `w`:
    the score of the method its kind is judged by, the verdict, the row counts and, for a numerical feature,
    each window's mean."""
    method = thresholds.method_for(kind)
    score = {"psi": psi, "jensenshannon": js, "wasserstein": wd, "chisquare": p}[method]
    rn, cn = w[0]["n"], w[1]["n"]
    means = {}
    if kind == "numerical":
        means = {
            "reference_mean": float(w[0]["s"].sum() / rn.sum()) if rn.sum() else None,
            "current_mean": float(w[1]["s"].sum() / cn.sum()) if cn.sum() else None,
        }
    return FeatureDrift(
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
        bins=int(bins),
        **means,
    )


def _fmt(x: float) -> str:
    return f"{x:.4g}"
