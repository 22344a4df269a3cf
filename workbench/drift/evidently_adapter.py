"""The Evidently adapter: Evidently's per-feature drift views on bounded in-memory samples, as detail.

The only module of the workbench that imports evidently (0.7 API: Report, Dataset, DataDefinition,
metrics.ValueDrift). It runs with our methods and thresholds, so its per-column scores can be set
beside the Spark statistics (they agree on the same data: see tests/test_drift.py).

One verdict per drift report: the run's verdict comes from the Spark statistics over every row. The
Evidently report therefore holds only per-feature views (one ValueDrift per column, no
DataDriftPreset dataset-level "Dataset Drift is (NOT) detected" summary), and its HTML opens with a
banner saying it is sample-based detail that decides nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DriftError
from ..storage import atomic_write_text
from .report import METHODS, Thresholds

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EvidentlyReport", "evidently_report"]


@dataclass
class EvidentlyReport:
    """Evidently's per-feature drift on in-memory samples: per-column scores and methods, the HTML.
    `drifted_count`/`drifted_share` count the sampled columns over our thresholds: detail, not the verdict."""

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

    def banner(self) -> str:
        """The line that opens the HTML: what this is, and where the verdict is."""
        return (
            f"Detail: Evidently's per-feature views on a sample of {self.reference_rows:,} reference and "
            f"{self.current_rows:,} current rows, with the same methods and thresholds. Sampled scores carry "
            "sampling noise and decide nothing: the run's verdict is the workbench drift report over every row."
        )

    def save_html(self, path: str | Path) -> Path:
        """Write the standalone HTML report (about 5 MB for 20 columns) atomically, the banner first."""
        import html
        import re

        path = Path(path)
        page = self.snapshot.get_html_str(as_iframe=False)
        note = (
            '<div class="workbench-detail-banner" style="font-family:sans-serif;padding:10px 14px;margin:0 0 8px 0;'
            f'background:#f6f8fa;border-left:6px solid #57606a">{html.escape(self.banner())}</div>'
        )
        page, found = re.subn(r"(<body[^>]*>)", lambda m: m.group(1) + note, page, count=1)
        atomic_write_text(path, page if found else note + page)
        return path


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: Sequence[str] = (),
    categorical: Sequence[str] = (),
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    methods: bool = True,
) -> EvidentlyReport:
    """Evidently's per-feature drift (ValueDrift per column) on two pandas frames, with our methods and
    thresholds (`methods=False` lets Evidently pick its own, which depend on the sample size)."""
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift
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

    def value_drift(column: str):
        if not methods:
            return ValueDrift(column=column)
        method = thresholds.numerical_method if column in numerical else thresholds.categorical_method
        return ValueDrift(column=column, method=method, threshold=thresholds.feature[method])

    snapshot = Report([value_drift(c) for c in columns]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    scores, used = {}, {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = float(metric["value"])
            used[config["column"]] = str(config.get("method") or "")
    count = sum(1 for c, score in scores.items() if used[c] in METHODS and thresholds.is_drift(used[c], score))
    share = count / len(columns) if columns else 0.0
    return EvidentlyReport(snapshot, scores, used, count, share, len(ref), len(cur))
