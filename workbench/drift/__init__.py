"""Drift monitoring: Spark-scale drift statistics, the Evidently adapter, and the model's view.

    from workbench import drift
    report = drift.compute_drift(reference_df, current_df, ["dep_delay", "carrier"])   # Spark, any size
    report.table(); report.status; report.metrics()
    ev = drift.evidently_report(ref_pdf, cur_pdf, numerical, categorical, report.thresholds)  # bounded sample
    ev.save_html(path)
    windows = drift.load_windows("flights", "month = 1", "month = 7", model="models:/flights-late@champion")

`stats` computes the statistics, `evidently_adapter` is the only module that imports evidently,
`monitor` reads the windows (and the prediction log), scores them and measures performance.
"""

from .evidently_adapter import EvidentlyReport, evidently_report
from .monitor import (
    LABEL,
    PREDICTION,
    PREDICTION_LOG_COLUMNS,
    RUN_DIR_ENV,
    Performance,
    PerformanceDrift,
    Windows,
    artifact_dir,
    binary_performance,
    data_quality,
    join_labels,
    load_prediction_log,
    load_windows,
    performance_drift,
    performance_status,
    prediction_drift,
    show_html,
    window_explanation_drift,
)
from .stats import (
    METHODS,
    OTHER,
    STATUSES,
    Binner,
    DriftReport,
    FeatureDrift,
    Thresholds,
    bin_index,
    compute_drift,
    sample_windows,
    split_features,
    worst_status,
)

__all__ = [
    "METHODS",
    "OTHER",
    "STATUSES",
    "Thresholds",
    "FeatureDrift",
    "DriftReport",
    "compute_drift",
    "split_features",
    "worst_status",
    "sample_windows",
    "bin_index",
    "Binner",
    "EvidentlyReport",
    "evidently_report",
    "PREDICTION_LOG_COLUMNS",
    "LABEL",
    "PREDICTION",
    "RUN_DIR_ENV",
    "Windows",
    "load_windows",
    "load_prediction_log",
    "join_labels",
    "data_quality",
    "Performance",
    "binary_performance",
    "performance_status",
    "artifact_dir",
    "PerformanceDrift",
    "prediction_drift",
    "performance_drift",
    "window_explanation_drift",
    "show_html",
]
