"""What makes a settings value valid: the URI schemes, address forms and ranges `workbench.config` accepts.

Kept apart from the settings' declarations so each stays readable; `workbench.config.load_settings` calls
`validate` on every Settings it builds.
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any
from urllib.parse import urlparse

from .errors import ConfigError

__all__ = ["validate", "LAKE_SCHEMES", "ARTIFACT_SCHEMES", "MLFLOW_SCHEMES"]

# Hadoop-filesystem schemes the lake may live on; a bare path means the local filesystem.
LAKE_SCHEMES = frozenset({"file", "hdfs", "viewfs", "s3a", "gs", "abfs", "abfss", "wasb", "wasbs", "oss"})
# Where MLflow keeps artifacts: the lake's schemes, MLflow's own names for S3, and `mlflow-artifacts:/` (the
# tracking server proxies the artifact store, so clients need no object-store credentials).
ARTIFACT_SCHEMES = LAKE_SCHEMES | {"s3", "mlflow-artifacts"}
MLFLOW_SCHEMES = frozenset({"sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks"})
SPARK_MASTER_RE = re.compile(
    r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://[^/\s]+:\d+|sc://[^/\s]+(:\d+)?(/.*)?|yarn|k8s://\S+|mesos://\S+)$"
)
SIZE_RE = re.compile(r"^\d+[kmgt]?$", re.I)


def validate(s: Any) -> None:
    """Raise ConfigError naming the first setting of `s` (a `workbench.config.Settings`) that is invalid, where
    its value came from, and what is expected."""

    def fail(name: str, expected: str) -> None:
        raise ConfigError(f"setting '{name}' (from {s.sources.get(name, 'default')}) is invalid: expected {expected}.")

    for f in fields(s):
        choices = f.metadata.get("choices")
        if choices and getattr(s, f.name) not in choices:
            fail(f.name, "one of " + ", ".join(choices))
        each = f.metadata.get("choices_each")
        if each and not set(getattr(s, f.name)) <= set(each):
            fail(f.name, "a comma-separated subset of " + ", ".join(each))
    for name in ("lake_root", "mlflow_artifacts", "audit_dir", "governed_dir", "governed_reads_dir", "predictions_dir"):
        value = getattr(s, name)
        scheme = urlparse(value).scheme
        allowed = ARTIFACT_SCHEMES if name == "mlflow_artifacts" else LAKE_SCHEMES
        if value and len(scheme) > 1 and scheme not in allowed:
            fail(
                name,
                f"a local path or a URI with one of the schemes {', '.join(sorted(allowed))}; found scheme '{scheme}'",
            )
    for name in ("mlflow_tracking_uri", "mlflow_registry_uri"):
        value = getattr(s, name)
        scheme = urlparse(value).scheme.split("+")[0]
        if value and scheme not in MLFLOW_SCHEMES:
            fail(
                name,
                f"a URI with one of the schemes {', '.join(sorted(MLFLOW_SCHEMES))}; found '{scheme or 'no scheme'}'",
            )
    if not SPARK_MASTER_RE.match(s.spark_master):
        fail("spark_master", "local[*], local[N], spark://HOST:PORT, sc://HOST:PORT, yarn or k8s://URL")
    for name in (
        "serving_port",
        "hub_port",
        "reports_port",
        "mlflow_ui_port",
        "reports_serve_port",
        "hub_api_port",
        "proxy_api_port",
    ):
        if not 0 < getattr(s, name) < 65536:
            fail(name, "a TCP port between 1 and 65535")
    for name in (
        "serving_timeout_ms",
        "serving_breaker_failures",
        "serving_batch_max_rows",
        "serving_max_pending_rows",
        "serving_max_body_bytes",
        "serving_max_rows",
        "serving_max_string_chars",
        "predlog_roll_seconds",
        "predlog_roll_rows",
        "predlog_queue_rows",
    ):
        if getattr(s, name) <= 0:
            fail(name, "a positive integer")
    for name in (
        "serving_batch_wait_ms",
        "serving_breaker_cooldown_ms",
        "serving_reload_interval_ms",
        "serving_lookup_max_age",
    ):
        if getattr(s, name) < 0:
            fail(name, "0 or a positive integer")
    try:
        float(s.serving_shadow_disagreement)
    except ValueError:
        fail("serving_shadow_disagreement", "a number such as 0.1")
    if s.spark_shuffle_partitions < 0:
        fail("spark_shuffle_partitions", "0 (automatic) or a positive integer")
    if s.cell_timeout <= 0:
        fail("cell_timeout", "a positive number of seconds")
    if s.scheduler_catchup_hours < 0:
        fail("scheduler_catchup_hours", "0 (no limit) or a positive number of hours")
    if s.hub_idle_timeout <= 0:
        fail("hub_idle_timeout", "a positive number of seconds")
    if bool(s.hub_ssl_cert) != bool(s.hub_ssl_key):
        fail("hub_ssl_cert" if not s.hub_ssl_cert else "hub_ssl_key", "hub_ssl_cert and hub_ssl_key set together")
    for name in ("spark_driver_memory", "spark_executor_memory"):
        value = getattr(s, name)
        if value and not SIZE_RE.match(value):
            fail(name, "a size such as 512m or 4g")
    for pair in s.spark_conf:
        if "=" not in pair:
            fail("spark_conf", "key=value pairs separated by commas")
    if s.webhook_url and urlparse(s.webhook_url).scheme not in {"http", "https"}:
        fail("webhook_url", "an http:// or https:// URL")
    if s.catalog_check_dependency_columns <= 0:
        fail("catalog_check_dependency_columns", "a positive number of columns")
    if s.catalog_check_rows <= 0:
        fail("catalog_check_rows", "a positive number of rows")
    if s.governed_read_ttl_hours <= 0:
        fail("governed_read_ttl_hours", "a positive number of hours")
