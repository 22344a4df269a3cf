"""What drift means and what a run found: the thresholds and statuses, per-feature results, the report.

`Thresholds` decides when a feature drifts and when a run is `warn` or `alert`; `FeatureDrift` is one
feature's scores; `DriftReport` holds them all with the histograms, and renders them (table, metrics,
plot). The statistics themselves are computed in `stats` (Spark passes in `histograms`, the
per-feature kernels in `kernels`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DriftError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["METHODS", "STATUSES", "Thresholds", "FeatureDrift", "DriftReport", "worst_status"]

STATUSES = ("ok", "warn", "alert")
# method -> (kinds it applies to, whether a LOW score means drift (p-values))
METHODS: dict[str, tuple[frozenset[str], bool]] = {
    "psi": (frozenset({"numerical", "categorical"}), False),
    "jensenshannon": (frozenset({"numerical", "categorical"}), False),
    "wasserstein": (frozenset({"numerical"}), False),
    "chisquare": (frozenset({"categorical"}), True),
}


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
