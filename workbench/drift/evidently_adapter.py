"""The Evidently adapter: Evidently's DataDriftPreset on bounded in-memory samples, for its rich HTML.

The only module of the workbench that imports evidently (0.7 API: Report, Dataset, DataDefinition,
presets.DataDriftPreset). It runs with our methods and thresholds, so its per-column scores can be
set beside the Spark statistics (they agree on the same data: see tests/test_drift.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DriftError
from ..storage import atomic_write_text
from .stats import Thresholds

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EvidentlyReport", "evidently_report"]


@dataclass
class EvidentlyReport:
    """Evidently's DataDriftPreset on in-memory windows: per-column scores, its share, and the HTML."""

    snapshot: Any = field(repr=False)
    scores: dict[str, float]
    methods: dict[str, str]
    drifted_count: int
    drifted_share: float
    reference_rows: int
    current_rows: int

    def dict(self) -> dict:
        return self.snapshot.dict()

    def compare(self, report) -> pd.DataFrame:
        """Our score on every row (Spark) beside Evidently's on the sample, per feature."""
        import pandas as pd

        rows = [
            {
                "feature": f.feature,
                "method": f.method,
                "spark_all_rows": f.score,
                "spark_drift": f.drifted,
                "evidently_sample": self.scores.get(f.feature),
                "evidently_method": self.methods.get(f.feature),
            }
            for f in report.features
        ]
        return pd.DataFrame(rows)

    def save_html(self, path: str | Path) -> Path:
        """Write the standalone HTML report (about 5 MB for 20 columns) atomically."""
        path = Path(path)
        atomic_write_text(path, self.snapshot.get_html_str(as_iframe=False))
        return path


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: Sequence[str] = (),
    categorical: Sequence[str] = (),
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    methods: bool = True,
) -> EvidentlyReport:
    """Evidently's DataDriftPreset on two pandas frames, with our methods and thresholds (`methods=False`
    lets Evidently pick its own, which depend on the sample size)."""
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DriftError(
            f"evidently is not importable ({exc}). Install it: pip install 'evidently>=0.7.20,<0.8'."
        ) from exc

    thresholds = Thresholds.from_dict(thresholds) if not isinstance(thresholds, Thresholds) else thresholds
    numerical, categorical = list(numerical), list(categorical)
    columns = numerical + categorical
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise DriftError(f"feature(s) {', '.join(missing)} missing from the sampled windows.")
    if reference.empty or current.empty:
        raise DriftError("a sampled window is empty: Evidently needs rows in both windows.")
    ref, cur = reference[columns].copy(), current[columns].copy()
    for c in categorical:  # Evidently compares categories as values; keep missing as missing
        ref[c] = ref[c].astype("object").where(ref[c].notna(), None)
        cur[c] = cur[c].astype("object").where(cur[c].notna(), None)
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    options: dict[str, Any] = {"columns": columns, "drift_share": thresholds.share_alert}
    if methods:
        options.update(
            num_method=thresholds.numerical_method,
            cat_method=thresholds.categorical_method,
            num_threshold=thresholds.feature[thresholds.numerical_method],
            cat_threshold=thresholds.feature[thresholds.categorical_method],
        )
    snapshot = Report([DataDriftPreset(**options)]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    scores, used, count, share = {}, {}, 0, 0.0
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith("ValueDrift"):
            scores[config["column"]] = float(metric["value"])
            used[config["column"]] = str(config.get("method") or "")
        elif kind.endswith("DriftedColumnsCount"):
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
    return EvidentlyReport(snapshot, scores, used, count, share, len(ref), len(cur))
