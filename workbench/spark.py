"""Spark sessions: one configured SparkSession per process, for local mode, a standalone cluster
or Spark Connect, chosen by the `spark_master` setting alone.

Every session is a governed one: SQL that reads files by path (``parquet.`/path` ``) is off, so a
`where=` predicate or a subquery cannot reach around the catalog to the raw files. In the production
profile a shared master (standalone, YARN, Kubernetes, Spark Connect) is refused unless the setting
`spark_cluster_enforces_access` says the cluster checks each user's file access itself: otherwise
its executors run under one OS account that can read every raw file for whoever submits code.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings, load_settings
from .errors import ConfigError, SetupError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "get_spark",
    "stop_spark",
    "ensure_java",
    "is_connect",
    "check_governed_session",
    "GOVERNED_CONF",
    "quiet_jvm_options",
]

MIN_JAVA = 17
GOVERNED_CONF = {"spark.sql.runSQLOnFiles": "false"}  # no `parquet.`path`` in SQL: files only through the catalog
_SHARED_MASTERS = ("spark://", "sc://", "yarn", "k8s://", "mesos://")


def ensure_java() -> str:
    """Set JAVA_HOME from the `java` on PATH when unset; fail with what to install when Java < 17."""
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home, "bin", "java") if java_home else None
    if not java or not java.exists():
        found = shutil.which("java")
        if not found:
            raise SetupError(
                f"Java {MIN_JAVA}+ is needed by Spark and none is on the PATH. Install it (Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`; conda: `conda install -c conda-forge openjdk=17`)."
            )
        java = Path(found).resolve()
        os.environ["JAVA_HOME"] = str(java.parent.parent)
    return os.environ["JAVA_HOME"]


def is_connect(settings: Settings) -> bool:
    return settings.spark_master.startswith("sc://")


def _shuffle_partitions(settings: Settings) -> int:
    if settings.spark_shuffle_partitions:
        return settings.spark_shuffle_partitions
    match = re.match(r"local\[(\*|\d+)", settings.spark_master)
    if settings.spark_master == "local":
        return 2
    if match:
        cores = os.cpu_count() or 2 if match.group(1) == "*" else int(match.group(1))
        return max(2, 2 * cores)
    return 200


def _app_name(settings: Settings, app_name: str | None) -> str:
    if app_name:
        return app_name
    from .identity import current_identity  # late: identity may ask the hub

    return f"workbench-{current_identity(settings).user}"


def get_spark(app_name: str | None = None, settings: Settings | None = None) -> SparkSession:
    """The active SparkSession, or a new one configured from settings.

    The app name names the user (or the job, when given) so cluster UIs show who runs what.
    """
    settings = settings or load_settings()
    from pyspark.sql import SparkSession

    _refuse_shared(settings, settings.spark_master)
    if is_connect(settings):
        builder = SparkSession.builder.remote(settings.spark_master).appName(_app_name(settings, app_name))
        session = builder.getOrCreate()
        session.conf.set("spark.sql.session.timeZone", "UTC")
        for key, value in GOVERNED_CONF.items():
            session.conf.set(key, value)
        return session

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    ensure_java()
    os.environ.setdefault("SPARK_LOCAL_IP", settings.spark_driver_host)
    os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON") or _python())
    builder = (
        SparkSession.builder.master(settings.spark_master)
        .appName(_app_name(settings, app_name))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "true")
        .config("spark.sql.shuffle.partitions", str(_shuffle_partitions(settings)))
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.driver.host", settings.spark_driver_host)
        .config("spark.driver.bindAddress", settings.spark_driver_host)
        .config("spark.ui.enabled", str(settings.spark_ui).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
    )
    if settings.spark_executor_memory:
        builder = builder.config("spark.executor.memory", settings.spark_executor_memory)
    for pair in settings.spark_conf:
        key, _, value = pair.partition("=")
        builder = builder.config(key.strip(), value.strip())
    for key, value in quiet_jvm_options(settings).items():
        builder = builder.config(key, value)
    for key, value in GOVERNED_CONF.items():  # last: spark_conf cannot turn them back on
        builder = builder.config(key, value)
    _launch_filtered_gateway(builder)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(settings.spark_log_level)
    return session


def session_master(spark) -> str:
    """The master URL a session runs on (`sc://...` for a Spark Connect client)."""
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        return "sc://"  # a Connect client: the server's account reads the files
    return spark.sparkContext.master


def _refuse_shared(settings: Settings, master: str) -> None:
    if settings.profile != "production" or settings.spark_cluster_enforces_access:
        return
    if master.startswith(_SHARED_MASTERS):
        kind = "Spark Connect server" if master.startswith("sc://") else "shared Spark master"
        raise ConfigError(
            f"The production profile refuses a {kind} ({master.split('://')[0]}) for governed reads: its executors run "
            "under the cluster's own OS account, which can read every raw file, and any code you send (a UDF, a "
            "query) runs there, so the filesystem boundary would not apply to you. Use a local master (setting "
            "spark_master = local[N]; each server runs as its own user), or, if the cluster enforces each user's "
            "access itself (executors run as the submitting user, e.g. Kerberos with HDFS permissions), set "
            "spark_cluster_enforces_access = true."
        )


def check_governed_session(settings: Settings, spark) -> None:
    """Make `spark` fit for a governed read: refuse a shared cluster in production (see the module
    docstring) and turn file-reading SQL off. Called on every governed read, on whatever session it uses."""
    _refuse_shared(settings, session_master(spark))
    for key, value in GOVERNED_CONF.items():
        if spark.conf.get(key, None) != value:
            spark.conf.set(key, value)


# ---- quiet by default ---------------------------------------------------------------------------
LOG4J2_FILE = Path(__file__).with_name("spark-log4j2.properties")
# Lines the JVM prints on its own at start-up. The incubator notice has no JVM switch (Spark's launcher
# adds `--add-modules=jdk.incubator.vector`), so it is dropped from the driver JVM's stderr here.
JVM_NOISE = re.compile(
    r"^(WARNING: Using incubator modules|Using Spark's default log4j profile|Setting default log level to"
    r"|To adjust logging level use sc.setLogLevel|For SparkR, use setLogLevel)"
)


def quiet_jvm_options(settings: Settings) -> dict[str, str]:
    """Spark conf that makes the driver JVM log at `spark_log_level` through the log4j2 file shipped with
    the package. Uses `spark.driver.defaultJavaOptions`, so `spark.driver.extraJavaOptions` stays the user's."""
    path = str(LOG4J2_FILE)
    if " " in path:
        path = f'"{path}"'
    return {
        "spark.driver.defaultJavaOptions": f"-Dlog4j.configurationFile={path} "
        f"-Dworkbench.spark.log.level={settings.spark_log_level}"
    }


def _relay_stderr(stream, write) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        if not JVM_NOISE.match(line):
            write(line)


def _launch_filtered_gateway(builder) -> None:
    """Start the driver JVM (as pyspark would, same conf) with its stderr through a filter that drops
    JVM_NOISE and passes every other line on to this process's stderr (a notebook cell's, in a kernel)."""
    import subprocess
    import sys
    import threading

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    conf = SparkConf(loadDefaults=False)
    for key, value in builder._options.items():
        conf.set(key, value)
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})

    def write(line: str) -> None:
        sys.stderr.write(line)
        sys.stderr.flush()

    threading.Thread(
        target=_relay_stderr, args=(gateway.proc.stderr, write), name="spark-jvm-stderr", daemon=True
    ).start()
    SparkContext._ensure_initialized(gateway=gateway)


def stop_spark() -> None:
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def _python() -> str:
    import sys

    return sys.executable
