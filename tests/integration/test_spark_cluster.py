"""get_spark() against a real standalone cluster (a master and two workers of one core each) and a real
Spark Connect server on 127.0.0.1, with only the spark_master setting changed. Each runs in a subprocess:
a Python process holds one SparkContext, and the test session already has a local one.

On the cluster, a governed `workbench.data.load()` and `explain_spark` must each run tasks on both executors:
the evidence is Spark's own status store (completed tasks per executor id, before and after each step) and
the executors' working folders (`<worker dir>/<app>/<executor id>`) seen from inside the Python tasks."""

from __future__ import annotations

import json
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


CLUSTER_JOB = """
import json, os, sys, time
from workbench.config import load_settings
from workbench.spark import get_spark
from workbench.data import load
from workbench.explain import explain_spark, load_explainer

s = load_settings()
spark = get_spark("cluster-test", s)
sc = spark.sparkContext
end = time.monotonic() + 120
while sc._jsc.sc().getExecutorMemoryStatus().size() < 3 and time.monotonic() < end:  # the driver + 2 executors
    time.sleep(0.5)
registered = sc._jsc.sc().getExecutorMemoryStatus().size() - 1

def completed():
    sc._jsc.sc().listenerBus().waitUntilEmpty(60000)  # the status store is fed asynchronously by the listener bus
    store = sc._jsc.sc().statusStore().executorList(True)
    rows = [store.apply(i) for i in range(store.size())]
    return {e.id(): e.completedTasks() for e in rows if e.id() != "driver"}

def delta(before):
    after = completed()
    return {k: v - before.get(k, 0) for k, v in after.items()}

def where_am_i(rows):
    count = sum(1 for _ in rows)
    yield (os.path.basename(os.getcwd()), count)

before = completed()
df = load("flights", columns=["year", "month", "day", "carrier", "tailnum", "dep_time"], where="month <= 3",
          purpose="cluster test", settings=s, spark=spark)
tails = [r.tailnum for r in df.where("tailnum IS NOT NULL").limit(20).collect()]
rows_by_executor = {}
for executor, n in df.rdd.mapPartitions(where_am_i).collect():
    rows_by_executor[executor] = rows_by_executor.get(executor, 0) + n
load_tasks = delta(before)

model_uri = sys.argv[1]
explainer = load_explainer(model_uri, s, spark, n_background=50)
rows = load("flights", where="month = 2 AND day <= 3", purpose="cluster test", settings=s, spark=spark)
before = completed()
out = explain_spark(model_uri, rows, output=sys.argv[2], settings=s, explainer=explainer, partitions=6)
explain_tasks = delta(before)
explained = spark.read.parquet(out).count()
print("RESULT", json.dumps({"master": spark.conf.get("spark.master"), "registered": registered, "tails": tails,
      "rows_by_executor": rows_by_executor, "load_tasks": load_tasks, "explain_tasks": explain_tasks,
      "explained": explained, "input": rows.count()}))
spark.stop()
"""


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def daemon(action: str, cls: str, env: dict, *args: str, instance: int = 1) -> None:
    subprocess.run(
        [str(spark_home() / "sbin" / "spark-daemon.sh"), action, cls, str(instance), *args],
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
        SPARK_DAEMON_JAVA_OPTS=os.environ.get("SPARK_SUBMIT_OPTS", ""),  # the flags of the tests' JVMs (conftest.py)
        SPARK_WORKER_DIR=str(tmp_path / "work"),
        PYSPARK_PYTHON=sys.executable,
    )


WORKERS = 2


def test_governed_load_and_explain_spark_spread_over_two_workers(daemon_env, trained_model, mlflow_settings, tmp_path):
    master_class, worker_class = "org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker"
    port, ui = free_port(), free_port()
    master = f"spark://127.0.0.1:{port}"
    daemon("start", master_class, daemon_env, "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui))
    started: list[int] = []
    try:
        wait_port(port)
        for instance in range(1, WORKERS + 1):  # spark-daemon.sh's instance number: one pid file and log each
            worker = ["--host", "127.0.0.1", "--webui-port", str(free_port()), "--cores", "1", "--memory", "1g"]
            daemon("start", worker_class, daemon_env, *worker, master, instance=instance)
            started.append(instance)
        env = dict(
            os.environ,
            WORKBENCH_HOME=str(REPO),
            WORKBENCH_SPARK_MASTER=master,
            WORKBENCH_SPARK_EXECUTOR_MEMORY="512m",
            # small input splits, so a month of flights is several tasks to spread
            WORKBENCH_SPARK_CONF="spark.sql.files.maxPartitionBytes=1m,spark.locality.wait=0s,"
            f"spark.executor.extraJavaOptions={os.environ.get('SPARK_SUBMIT_OPTS', '')}",
            WORKBENCH_AUDIT_DIR=str(tmp_path / "audit"),
            WORKBENCH_MLFLOW_TRACKING_URI=mlflow_settings.mlflow_tracking_uri,
            WORKBENCH_MLFLOW_ARTIFACTS=mlflow_settings.mlflow_artifacts,
            SPARK_LOCAL_IP="127.0.0.1",
        )
        out = subprocess.run(
            [sys.executable, "-c", CLUSTER_JOB, trained_model.registered_uri, (tmp_path / "explained").as_uri()],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(out.stdout.split("RESULT ", 1)[1].splitlines()[0])
    finally:
        for instance in started:
            daemon("stop", worker_class, daemon_env, instance=instance)
        daemon("stop", master_class, daemon_env)

    assert result["master"] == master and result["registered"] == WORKERS
    # governed: the caller's masks were applied on the executors (salted hashes, not tail numbers)
    assert result["tails"] and all(len(t) == 64 and not t.startswith("N") for t in result["tails"])
    events = [json.loads(line) for f in (tmp_path / "audit").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert any(e.get("dataset") == "flights" and e.get("purpose") == "cluster test" for e in events)
    # tasks ran on both executors, for the load and for explain_spark
    assert len(result["rows_by_executor"]) == WORKERS and all(n > 0 for n in result["rows_by_executor"].values())
    assert set(result["rows_by_executor"]) == set(result["load_tasks"]), result
    assert len(result["load_tasks"]) == WORKERS and all(n > 0 for n in result["load_tasks"].values()), result
    assert len(result["explain_tasks"]) == WORKERS and all(n > 0 for n in result["explain_tasks"].values()), result
    assert result["explained"] == result["input"] > 0


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
