"""Settings: the one place that knows where things live and how to reach them.

Values come from, in order of precedence: `WORKBENCH_<NAME>` environment variables, an optional
`workbench.toml` (found in the project root, or named by `WORKBENCH_CONFIG`), then laptop defaults.
Every path and URL the workbench uses is a field here; nothing runs at import time.

`workbench.toml` takes flat keys (`lake_root = "hdfs://nn:8020/lake"`) or sections whose name
prefixes the key (`[spark]` + `master = "spark://host:7077"` is `spark_master`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlparse

from .config_rules import validate as _validate
from .errors import ConfigError

__all__ = ["Settings", "load_settings", "find_project_root", "resolve_path", "lake_uri", "ENV_PREFIX"]

ENV_PREFIX = "WORKBENCH_"
CONFIG_FILE_NAME = "workbench.toml"


def _setting(default: Any, help: str, **meta: Any) -> Any:
    """A settings field with its help text (shown by `workbench config`)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class Settings:
    """Effective settings. Relative paths are resolved against `home` (the project root)."""

    home: str = _setting(
        "",
        "Project root; relative paths below resolve against it. Default: the folder holding workbench.toml, else the workbench checkout, else the working directory.",
    )
    profile: str = _setting(
        "local",
        "Deployment profile: 'local' (laptop, advisory governance) or 'production' (system users, enforced boundary).",
        choices=("local", "production"),
    )

    # Data lake and catalog
    lake_root: str = _setting(
        "lake",
        "Root of the data lake: a local path or any Hadoop-filesystem URI (file://, hdfs://, s3a://, gs://, abfss://).",
    )
    catalog_path: str = _setting(
        "hub_config/catalog.yaml", "The dataset catalog (names, URIs, schemas, column classifications, grants)."
    )
    mask_salt: str = _setting(
        "workbench-dev-salt-change-me",
        "Secret salt for `hash` column masks. Set it from a secret store in production.",
        secret=True,
    )
    audit_dir: str = _setting(
        "",
        "Where the append-only read audit log lives (a local or mounted path: it is appended with O_APPEND and fsync). Default: <lake_root>/audit.",
    )
    governed_dir: str = _setting(
        "",
        "The governed zone: masked and row-filtered views written by `workbench data publish`. Default: <lake_root>/governed.",
    )
    governed_reads_dir: str = _setting(
        "",
        "Production: where the governance service vends one folder per allowed read of a governed view (hard links "
        "to the view's files, readable only by the reader). On the governed zone's filesystem. Default: <lake_root>/reads.",
    )
    governed_read_ttl_hours: float = _setting(
        12.0, "Production: hours a vended read folder lives before the governance service removes it."
    )

    # Identity (outside the hub)
    user: str = _setting(
        "",
        "Local identity when not inside a hub-spawned server or a job. Default: the OS user. Reported as unverified.",
    )
    groups: tuple[str, ...] = _setting(
        ("data-scientists",), "Groups of the local identity (comma-separated). Unverified outside the hub."
    )
    service_user: str = _setting("workbench-service", "Identity scheduled jobs run as.")
    service_groups: tuple[str, ...] = _setting(("data-stewards",), "Groups of the service identity (comma-separated).")

    # Spark
    spark_master: str = _setting(
        "local[*]",
        "Spark master: local[*], local[N], spark://host:7077, sc://host:15002 (Spark Connect), yarn, k8s://...",
    )
    spark_driver_memory: str = _setting(
        "2g", "Spark driver memory (e.g. 2g); applies when the driver JVM is started by us."
    )
    spark_executor_memory: str = _setting(
        "", "Spark executor memory on a cluster (e.g. 4g); empty leaves Spark's default."
    )
    spark_shuffle_partitions: int = _setting(
        0, "spark.sql.shuffle.partitions; 0 sizes it from the master (2 per local core, 200 on a cluster)."
    )
    spark_driver_host: str = _setting(
        "127.0.0.1", "Address the driver binds and advertises. On a cluster, an address the executors can reach."
    )
    spark_ui: bool = _setting(False, "Start the Spark web UI.")
    spark_conf: tuple[str, ...] = _setting((), "Extra Spark settings as key=value pairs (comma-separated).")

    # MLflow
    mlflow_tracking_uri: str = _setting(
        "sqlite:///mlflow.db",
        "MLflow tracking URI: sqlite:///path (relative to home), http(s)://server, postgresql://...",
    )
    mlflow_registry_uri: str = _setting("", "MLflow model registry URI. Default: the tracking URI.")
    mlflow_artifacts: str = _setting(
        "mlartifacts",
        "Default artifact root for new MLflow experiments: a local path, an object-store URI (s3://, gs://, abfss://), "
        "or mlflow-artifacts:/ to upload through the tracking server (its --artifacts-destination).",
    )
    mlflow_experiment: str = _setting("workbench", "MLflow experiment that training runs are logged to.")
    model_name: str = _setting(
        "",
        "Registered model name used when a command or notebook names none; empty means <dataset>-<target name> "
        "from the dataset's roles in the catalog.",
    )

    # Notebooks, jobs and reports
    notebooks_dir: str = _setting("notebooks", "Folder of the parameterized notebooks.")
    reports_dir: str = _setting("reports", "Where rendered runs and the reports index are written.")
    jobs_file: str = _setting("jobs.yaml", "Scheduled jobs declaration.")
    kernel_name: str = _setting("python3", "Jupyter kernel used for headless runs.")
    cell_timeout: int = _setting(1800, "Seconds one notebook cell may run in a headless job before it is stopped.")
    webhook_url: str = _setting(
        "",
        "Optional URL that receives a JSON POST for every run that ends in status 'alert' (often carries a token: shown as ***).",
        secret=True,
    )
    airflow_dags_dir: str = _setting(
        "airflow/dags", "Where `workbench jobs export-airflow` writes one Airflow DAG file per job."
    )
    airflow_workbench_command: str = _setting(
        "workbench",
        "The workbench command the exported Airflow DAGs' tasks run on the Airflow workers: a name on their PATH, "
        "or an absolute path such as /srv/project/.venv/bin/workbench when the workbench has its own virtual environment.",
    )

    # Serving
    serving_host: str = _setting("127.0.0.1", "Address the serving wrapper binds.")
    serving_port: int = _setting(5050, "Port the serving wrapper listens on.")
    predictions_dir: str = _setting("", "Where the serving wrapper logs predictions. Default: <lake_root>/predictions.")
    serving_cache_dir: str = _setting(
        ".serving-cache",
        "Local snapshot of the feature functions' lookup tables, so serving workers start without Spark (owner-only).",
    )
    serving_lookup_max_age: int = _setting(
        3600,
        "Seconds a lookup snapshot is reused before `workbench serve` reads the lookups again through workbench.data.load.",
    )
    serving_timeout_ms: int = _setting(
        500, "Per-request time budget in milliseconds; past it the request is answered by the fallback."
    )
    serving_fallback: str = _setting(
        "previous",
        "What answers when a model fails, is too slow or its circuit is open: 'previous' (the previous champion), 'constant:VALUE', 'none' (503), or a comma-separated chain such as 'previous,constant:0.2'.",
    )
    serving_breaker_failures: int = _setting(
        5, "Consecutive failures or timeouts of a model that open its circuit breaker."
    )
    serving_breaker_cooldown_ms: int = _setting(
        30000, "Milliseconds an open circuit stays open before one trial request is let through."
    )
    serving_batch_max_rows: int = _setting(64, "Micro-batching: most rows predicted in one model call.")
    serving_batch_wait_ms: int = _setting(
        5,
        "Micro-batching: longest wait, in milliseconds, for the rows expected in the next batch (a lone client never waits).",
    )
    serving_max_pending_rows: int = _setting(
        4096, "Rows waiting for the model beyond which new requests get 503 OVERLOADED."
    )
    serving_max_body_bytes: int = _setting(1048576, "Largest accepted request body in bytes (413 beyond).")
    serving_max_rows: int = _setting(1000, "Most rows in one request.")
    serving_max_string_chars: int = _setting(256, "Longest accepted string value, in characters.")
    serving_reload_interval_ms: int = _setting(
        10000, "How often, in milliseconds, the registry aliases are polled for hot reload (0: never)."
    )
    serving_shadow_disagreement: str = _setting(
        "0.1",
        "Shadow vs primary: a regression disagrees beyond this relative difference; a classifier when the labels differ.",
    )
    predlog_roll_seconds: int = _setting(
        60, "The prediction log starts a new parquet file after this many seconds (rows are held in memory until then)."
    )
    predlog_roll_rows: int = _setting(100000, "... or after this many rows.")
    predlog_queue_rows: int = _setting(
        400000,
        "Rows logged and not yet rolled into parquet before the full-queue behaviour applies (a few predlog_roll_rows, "
        "so requests go on while a full segment is rolled).",
    )
    predlog_on_full: str = _setting(
        "block",
        "When the prediction log's queue is full: 'block' (the request waits; never loses a row) or 'drop' (count the dropped rows in /metrics).",
        choices=("block", "drop"),
    )
    predlog_durability: str = _setting(
        "ack",
        "'ack': a 200 means the request's log row is on disk (one fsync per micro-batch before its answers go out; a killed server loses no acknowledged row). 'async': answers do not wait for the fsync (a killed process still loses nothing; a power cut can lose the last seconds).",
        choices=("ack", "async"),
    )

    # Hub
    hub_ip: str = _setting("127.0.0.1", "Address the hub's proxy binds.")
    hub_port: int = _setting(8000, "Port the hub's proxy listens on.")
    hub_state_dir: str = _setting(
        ".hub", "Hub state: database, cookie secret, proxy token, user homes (local profile)."
    )
    hub_db_url: str = _setting(
        "",
        "Hub database URL (postgresql://... in production; may hold a password). Default: SQLite under hub_state_dir.",
        secret=True,
    )
    hub_cleanup_servers: bool = _setting(
        True,
        "Stop the users' servers when the hub stops. false: a hub restart (an upgrade) leaves them running and the "
        "restarted hub finds them again in its database (needs a database that outlives the hub, e.g. PostgreSQL).",
    )
    hub_config_file: str = _setting(
        "hub_config/jupyterhub_config.py",
        "The JupyterHub configuration file `workbench hub` starts the hub with (site overrides go in jupyterhub_config.d/ beside it).",
    )
    hub_templates_dir: str = _setting(
        "hub_config/templates", "Jinja templates that override the hub's pages (JupyterHub.template_paths)."
    )
    hub_users_file: str = _setting(
        "hub_config/users.yaml",
        "Users and groups (hub_config/users.yaml); membership is applied at each login and auth refresh.",
    )
    hub_admin_password: str = _setting(
        "", "Password of the first admin (local profile). Empty: prompted by `workbench hub`.", secret=True
    )
    proxy_command: str = _setting(
        ".npm/node_modules/.bin/configurable-http-proxy",
        "configurable-http-proxy executable (installed by `make setup` into a local npm prefix).",
    )
    reports_port: int = _setting(8011, "Port of the reports service behind the hub.")
    mlflow_ui_port: int = _setting(8012, "Port of the MLflow UI service behind the hub.")
    reports_serve_port: int = _setting(8010, "Port `workbench reports serve` listens on.")
    hub_api_port: int = _setting(8081, "Port of the hub's own API on 127.0.0.1 (the proxy and the servers talk to it).")
    proxy_api_port: int = _setting(8001, "Port of the proxy's REST API on 127.0.0.1 (only the hub uses it).")
    hub_admin_user: str = _setting(
        "admin",
        "Name of the first admin. Local profile: `workbench hub` creates its account from hub_admin_password or a prompt.",
    )
    hub_services: tuple[str, ...] = _setting(
        ("reports", "mlflow", "idle-culler", "scheduler"),
        "Hub-managed services to run (comma-separated): reports, mlflow, idle-culler, scheduler.",
        choices_each=("reports", "mlflow", "idle-culler", "scheduler"),
    )
    hub_idle_timeout: int = _setting(3600, "Seconds a user's server may sit idle before the idle culler stops it.")
    hub_ssl_cert: str = _setting(
        "",
        "TLS certificate (PEM) for the hub's public address; empty: plain HTTP (put a TLS proxy in front in production).",
    )
    hub_ssl_key: str = _setting("", "TLS private key file (PEM) matching hub_ssl_cert.")

    # Catalog strictness and hashing keys (issue 14)
    mask_key_file: str = _setting(
        "",
        "File holding the secret key of `hash` masks (HMAC-SHA256), readable only by the data service account "
        "(mode 0600 or 0400). Required in the production profile; when empty elsewhere, hashes are salted SHA-256 "
        "with mask_salt (development only).",
    )
    spark_cluster_enforces_access: bool = _setting(
        False,
        "Production only: allow a shared Spark master or Spark Connect server for governed reads. Set it only when "
        "the cluster itself enforces each user's file access (executors run as the user, e.g. Kerberos + HDFS ACLs); "
        "otherwise its OS account reads every raw file on behalf of any user.",
    )
    catalog_check_rows: int = _setting(
        200000, "Rows `workbench data check` samples per dataset to test masks and functional dependencies."
    )
    catalog_check_dependency_columns: int = _setting(
        4,
        "Largest set of released columns `workbench data check` tries as the determinant of a masked column "
        "(1 = single columns only; each size costs more Spark work than the last).",
    )
    # Governance service (identity, grant decisions and the audit writer; see workbench.governance)
    governance_socket: str = _setting(
        "",
        "Unix socket of the governance service, which decides grants from the caller's OS account and is the only "
        "writer of the audit log. Required in production (e.g. /run/workbench/governance.sock); empty in the local "
        "profile: this process decides and writes the audit log itself.",
    )
    hub_server_user: str = _setting(
        "nobody",
        "Local profile, hub running as root: the unprivileged system account single-user servers run as "
        "(they never run as root).",
    )
    # What users see (quiet output, the reports index, scheduler catch-up)
    spark_log_level: str = _setting(
        "ERROR",
        "Level of Spark's JVM logging in sessions the workbench starts (notebooks, `workbench run`, the CLI): ERROR keeps cells quiet; WARN, INFO or DEBUG to investigate.",
        choices=("ERROR", "WARN", "INFO", "DEBUG"),
    )
    scheduler_catchup: str = _setting(
        "latest",
        "Cron times missed while no scheduler ran: 'latest' runs each job's latest missed time once at start (when within scheduler_catchup_hours; never a job that promotes a model), 'none' waits for the next time.",
        choices=("latest", "none"),
    )
    scheduler_catchup_hours: int = _setting(
        24, "A missed cron time older than this many hours is not caught up at scheduler start (0: no limit)."
    )
    reports_hub_url: str = _setting(
        "/hub/",
        "Where the reports pages link back to the hub (their header's hub and logout links); empty: no header links (a folder opened from disk).",
    )

    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False, metadata={"internal": True})

    # ---- derived locations -------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """A path-valued setting resolved against `home` (local filesystem only)."""
        return resolve_path(self.home, getattr(self, name))

    @property
    def lake(self) -> str:
        """The lake root as a URI (file:// for local paths)."""
        return lake_uri(self.home, self.lake_root)

    @property
    def audit_uri(self) -> str:
        return lake_uri(self.home, self.audit_dir) if self.audit_dir else f"{self.lake}/audit"

    @property
    def governed_uri(self) -> str:
        return lake_uri(self.home, self.governed_dir) if self.governed_dir else f"{self.lake}/governed"

    @property
    def reads_uri(self) -> str:
        return lake_uri(self.home, self.governed_reads_dir) if self.governed_reads_dir else f"{self.lake}/reads"

    @property
    def predictions_uri(self) -> str:
        return lake_uri(self.home, self.predictions_dir) if self.predictions_dir else f"{self.lake}/predictions"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI with a relative sqlite path resolved against home."""
        return _resolve_sqlite(self.home, self.mlflow_tracking_uri)

    @property
    def registry_uri(self) -> str:
        return _resolve_sqlite(self.home, self.mlflow_registry_uri) if self.mlflow_registry_uri else self.tracking_uri

    @property
    def artifacts_uri(self) -> str:
        return lake_uri(self.home, self.mlflow_artifacts)

    def public_items(self) -> list[tuple[str, Any, str, str]]:
        """(name, value, source, help) for every setting, secrets shown as '***'."""
        rows = []
        for f in fields(self):
            if f.metadata.get("internal"):
                continue
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            rows.append((f.name, value, self.sources.get(f.name, "default"), f.metadata.get("help", "")))
        return rows

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with some values replaced (validated like any other source)."""
        merged = {f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get("internal")}
        merged.update(values)
        sources = dict(self.sources, **dict.fromkeys(values, "override"))
        return _build(merged, sources)


def find_project_root(start: Path | None = None) -> Path:
    """The folder holding workbench.toml, else this checkout (if the package is used from one), else cwd."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE_NAME).is_file():
            return folder
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "notebooks").is_dir():
        return checkout
    return here


def resolve_path(home: str | Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else Path(home) / p


def lake_uri(home: str | Path, value: str) -> str:
    """A URI for a lake location: URIs pass through, local paths become absolute file:// URIs."""
    scheme = urlparse(value).scheme
    if scheme and len(scheme) > 1:  # a one-letter scheme is a Windows drive
        return value.rstrip("/")
    return resolve_path(home, value).resolve().as_uri()


def _resolve_sqlite(home: str, uri: str) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(resolve_path(home, uri[len(prefix) :]))
    return uri


# ---- loading ---------------------------------------------------------------------------------
def load_settings(
    env: dict[str, str] | None = None, config_file: str | Path | None = None, **overrides: Any
) -> Settings:
    """Read settings from the environment, an optional workbench.toml and the defaults.

    `env` defaults to os.environ; `config_file` to $WORKBENCH_CONFIG or <home>/workbench.toml.
    Raises ConfigError naming the key, where the bad value came from, and what is expected.
    """
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    known = {f.name for f in fields(Settings) if not f.metadata.get("internal")}

    home_env = env.get(ENV_PREFIX + "HOME")
    home = Path(home_env).expanduser().resolve() if home_env else find_project_root()
    file_path = Path(config_file or env.get(ENV_PREFIX + "CONFIG") or home / CONFIG_FILE_NAME)
    if config_file or env.get(ENV_PREFIX + "CONFIG"):
        if not file_path.is_file():
            raise ConfigError(f"Config file {file_path} does not exist. Create it or unset WORKBENCH_CONFIG.")
    if file_path.is_file():
        for key, value in _read_toml(file_path).items():
            if key not in known:
                raise ConfigError(f"{file_path}: unknown setting '{key}'. Known settings: {', '.join(sorted(known))}.")
            values[key], sources[key] = value, str(file_path)

    for key in known:
        env_name = ENV_PREFIX + key.upper()
        if env_name in env:
            values[key], sources[key] = env[env_name], f"env {env_name}"

    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"Unknown setting '{key}'.")
        values[key], sources[key] = value, "override"

    if "home" not in values:
        values["home"], sources["home"] = str(home), "detected"
    return _build(values, sources)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}. Fix the line it names.") from exc
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                flat[f"{key}_{sub}"] = subvalue
        else:
            flat[key] = value
    return flat


def _build(values: dict[str, Any], sources: dict[str, str]) -> Settings:
    hints = get_type_hints(Settings)
    converted: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name not in values or f.metadata.get("internal"):
            continue
        converted[f.name] = _convert(f.name, values[f.name], hints[f.name], sources.get(f.name, "default"))
    settings = Settings(**converted, sources=sources)
    _validate(settings)
    return settings


def _convert(name: str, value: Any, hint: Any, source: str) -> Any:
    where = f"setting '{name}' (from {source})"
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{where} must be true or false, found a {type(value).__name__} that is neither.")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, found a boolean.")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{where} must be an integer, found a {type(value).__name__} that is not one.") from None
    if hint == tuple[str, ...]:
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        return tuple(str(v).strip() for v in items if str(v).strip())
    if hint is float:
        try:
            return float(str(value).strip())
        except ValueError:
            raise ConfigError(f"{where} must be a number, found a {type(value).__name__} that is not one.") from None
    if not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where} must be a string, found a {type(value).__name__}.")
    return str(value)


def replace(settings: Settings, **values: Any) -> Settings:
    """dataclasses.replace without validation, for tests that build Settings by hand."""
    return dataclasses.replace(settings, **values)
