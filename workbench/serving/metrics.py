"""Prometheus metrics of the serving wrapper (one registry per service, so services never share counters).

With `workbench serve --workers N` the CLI sets PROMETHEUS_MULTIPROC_DIR and every worker writes its
figures there; `/metrics` then sums the workers (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import threading

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        r = self.registry = CollectorRegistry(auto_describe=True)
        p = "workbench_serving_"
        self.requests = Counter(
            p + "requests", "HTTP requests by endpoint and status code.", ["endpoint", "status"], registry=r
        )
        self.request_latency = Histogram(
            p + "request_latency_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(p + "errors", "Requests answered with an error, by error code.", ["code"], registry=r)
        self.predictions = Counter(
            p + "predictions", "Rows answered, by variant and model version.", ["variant", "version"], registry=r
        )
        self.prediction_latency = Histogram(
            p + "prediction_latency_seconds",
            "Arrival-to-answer time of a row, by variant.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            p + "fallbacks", "Rows answered by the fallback, by variant and reason.", ["variant", "reason"], registry=r
        )
        self.out_of_domain = Counter(
            p + "out_of_domain_rows", "Rows served with a value outside the trained domain.", ["variant"], registry=r
        )
        self.model_errors = Counter(
            p + "model_errors", "Model calls that raised or returned non-finite values.", ["variant"], registry=r
        )
        self.circuit_open = Gauge(
            p + "circuit_open",
            "1 while the variant's circuit breaker is open.",
            ["variant"],
            registry=r,
            multiprocess_mode="max",
        )
        self.model_version = Gauge(
            p + "model_version", "The version each variant serves.", ["variant"], registry=r, multiprocess_mode="max"
        )
        self.reloads = Counter(
            p + "reloads", "Hot reloads by variant and outcome (swapped, failed).", ["variant", "outcome"], registry=r
        )
        self.shadow_compared = Counter(
            p + "shadow_comparisons", "Rows predicted by the shadow and compared.", registry=r
        )
        self.shadow_disagreed = Counter(
            p + "shadow_disagreements", "Compared rows where shadow and primary disagree.", registry=r
        )
        self.shadow_failures = Counter(
            p + "shadow_failures", "Shadow rows that failed (the primary is unaffected).", registry=r
        )
        self.shadow_dropped = Counter(
            p + "shadow_dropped_rows", "Shadow rows dropped because the shadow fell behind.", registry=r
        )
        self.shadow_rate = Gauge(
            p + "shadow_disagreement_ratio",
            "Disagreements / comparisons since start.",
            registry=r,
            multiprocess_mode="max",
        )
        self.batch_rows = Histogram(
            p + "batch_rows",
            "Rows per model call (micro-batching), by lane.",
            ["lane"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.predlog_dropped = Counter(
            p + "predlog_dropped_rows", "Prediction-log rows dropped (predlog_on_full=drop).", registry=r
        )
        self.predlog_queue = Gauge(
            p + "predlog_queue_rows",
            "Rows waiting for the prediction-log writer.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.predlog_files = Gauge(
            p + "predlog_files_written",
            "Parquet files written by this process.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.predlog_syncs = Gauge(
            p + "predlog_wal_syncs",
            "fdatasync calls of the prediction log's write-ahead file by this process (group commit: at most one "
            "per batch).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.predlog_recovered = Gauge(
            p + "predlog_recovered_rows",
            "Prediction-log rows this process recovered at start from the write-ahead files of stopped processes.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self._shadow_counts = [0, 0]
        self._predlog_dropped_seen = 0
        self._sync_lock = threading.Lock()

    def shadow(self, compared: int, disagreed: int) -> None:
        self.shadow_compared.inc(compared)
        self.shadow_disagreed.inc(disagreed)
        self._shadow_counts[0] += compared
        self._shadow_counts[1] += disagreed
        if self._shadow_counts[0]:
            self.shadow_rate.set(self._shadow_counts[1] / self._shadow_counts[0])

    def sync_predlog(self, plog) -> None:
        """Copy the log's counters into the metrics (after each batch, in its lane, and on /metrics)."""
        if plog is None:
            return
        with self._sync_lock:  # lanes and /metrics both call it: count each dropped row once
            new = plog.dropped_rows - self._predlog_dropped_seen
            if new > 0:
                self.predlog_dropped.inc(new)
                self._predlog_dropped_seen += new
        self.predlog_queue.set(plog.queued_rows)
        self.predlog_files.set(plog.files_written)
        self.predlog_syncs.set(plog.wal.syncs)
        self.predlog_recovered.set(plog.recovered_rows)

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
