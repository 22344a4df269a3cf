"""One verdict per drift report: Evidently's HTML holds per-feature views labelled as sample-based detail,
never a dataset-level conclusion of its own."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench import drift


def test_the_evidently_report_is_per_feature_detail_without_a_dataset_verdict(tmp_path):
    rng = np.random.default_rng(3)
    reference = pd.DataFrame(
        {"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000), "c": rng.choice(list("xyz"), 2000)}
    )
    current = pd.DataFrame(
        {"a": rng.normal(1.5, 1, 2000), "b": rng.normal(0, 1, 2000), "c": rng.choice(list("xyz"), 2000)}
    )
    report = drift.evidently_report(reference, current, ["a", "b"], ["c"])
    assert set(report.scores) == {"a", "b", "c"}
    assert report.drifted_count == 1 and report.drifted_share == 1 / 3  # `a` only, over our thresholds
    kinds = {m["config"]["type"].rsplit(":", 1)[-1] for m in report.dict()["metrics"]}
    assert kinds == {"ValueDrift"}  # no DriftedColumnsCount: no share-of-columns verdict
    page = report.save_html(tmp_path / "evidently.html").read_text()
    assert "Dataset Drift" not in page and "DriftedColumnsCount" not in page
    assert page.index("workbench-detail-banner") < page.index("</body>")
    assert "decide nothing" in page and "2,000 reference" in page
