"""get_spark() against a real standalone cluster and a real Spark Connect server on 127.0.0.1,
with only the spark_master setting changed. Each runs in a subprocess: a Python process holds one
SparkContext, and the test session already has a local one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration

JOB = """
import sys
from workbench.config import load_settings
from workbench.spark import get_spark
s = load_settings()
spark = get_spark("cluster-test", s)
n = spark.read.parquet(s.lake + "/raw/flights").where("month = 1").count()
print("MASTER", spark.conf.get("spark.master", "connect") if not s.spark_master.startswith("sc://") else s.spark_master)
print("ROWS", n)
spark.stop()
"""


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def daemon(action: str, cls: str, env: dict, *args: str) -> None:
    subprocess.run(
        [str(spark_home() / "sbin" / "spark-daemon.sh"), action, cls, "1", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


def wait_port(port: int, timeout: float = 60) -> None:
    import socket

    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listening on {port}")


def run_job(master: str) -> str:
    env = dict(os.environ, WORKBENCH_HOME=str(REPO), WORKBENCH_SPARK_MASTER=master, SPARK_LOCAL_IP="127.0.0.1")
    out = subprocess.run([sys.executable, "-c", JOB], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture
def daemon_env(tmp_path, repo_settings):
    from workbench.spark import ensure_java

    ensure_java()
    return dict(
        os.environ,
        SPARK_HOME=str(spark_home()),
        SPARK_LOG_DIR=str(tmp_path / "logs"),
        SPARK_PID_DIR=str(tmp_path / "pids"),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_WORKER_DIR=str(tmp_path / "work"),
        PYSPARK_PYTHON=sys.executable,
    )


def test_job_runs_on_a_standalone_cluster(daemon_env):
    master_class, worker_class = "org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker"
    port, ui, wui = free_port(), free_port(), free_port()
    daemon("start", master_class, daemon_env, "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui))
    try:
        wait_port(port)
        daemon(
            "start",
            worker_class,
            daemon_env,
            "--host",
            "127.0.0.1",
            "--webui-port",
            str(wui),
            "--cores",
            "1",
            "--memory",
            "1g",
            f"spark://127.0.0.1:{port}",
        )
        time.sleep(3)
        out = run_job(f"spark://127.0.0.1:{port}")
        assert f"MASTER spark://127.0.0.1:{port}" in out
        assert "ROWS 27004" in out
    finally:
        daemon("stop", worker_class, daemon_env)
        daemon("stop", master_class, daemon_env)


def test_job_runs_through_spark_connect(daemon_env):
    port = free_port()
    sbin = spark_home() / "sbin"
    subprocess.run(
        [
            str(sbin / "start-connect-server.sh"),
            "--master",
            "local[2]",
            "--conf",
            "spark.connect.grpc.binding.address=127.0.0.1",
            "--conf",
            f"spark.connect.grpc.binding.port={port}",
            "--conf",
            "spark.ui.enabled=false",
        ],
        env=daemon_env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        wait_port(port, timeout=90)
        out = run_job(f"sc://127.0.0.1:{port}")
        assert "ROWS 27004" in out
    finally:
        subprocess.run([str(sbin / "stop-connect-server.sh")], env=daemon_env, capture_output=True, timeout=120)
