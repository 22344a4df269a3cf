"""Quiet by default: a `workbench run` that starts Spark shows no log4j banner and no JVM incubator notice,
neither on its stderr nor in the executed notebook; the spark_log_level setting raises the JVM's level."""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat

from workbench.config import load_settings
from workbench.runs.record import RunRecord
from workbench.spark import JVM_NOISE, quiet_jvm_options

from .notebook_factory import cli_env, make_home, workbench, write_notebook

NOISE = re.compile(r"log4j|incubator|setLogLevel|NativeCodeLoader", re.I)
SPARK_CELLS = [
    "from workbench.spark import get_spark",
    "spark = get_spark()\nprint('rows', spark.range(5).count())",
    "from workbench.reports import publish\npublish(status='ok')",
]


def test_a_spark_notebook_run_prints_no_jvm_noise(tmp_path):
    make_home(tmp_path)
    write_notebook(tmp_path, "20_spark", "size = 5  # rows", SPARK_CELLS)
    out = workbench(tmp_path, "run", "20_spark", timeout=600, WORKBENCH_SPARK_MASTER="local[1]")
    assert out.returncode == 0, out.stderr[-2000:]
    assert not NOISE.search(out.stderr), out.stderr[-2000:]
    [folder] = (tmp_path / "reports" / "runs" / "20_spark").iterdir()
    executed = nbformat.read(str(RunRecord.load(folder).executed_notebook), as_version=4)
    texts = [o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("rows 5" in t for t in texts)  # the cell's own output is there
    assert not [t for t in texts if NOISE.search(t)]


def test_the_log_level_setting_raises_the_jvm_level(tmp_path):
    settings = make_home(tmp_path)
    assert "-Dworkbench.spark.log.level=ERROR" in quiet_jvm_options(settings)["spark.driver.defaultJavaOptions"]
    code = (
        "from workbench.spark import get_spark\n"
        "s = get_spark('t')\n"
        "s.sparkContext._jvm.org.apache.logging.log4j.LogManager.getLogger('workbench.test').warn('raised-level-marker')\n"
        "print(s.range(2).count())\n"
    )
    env = cli_env(tmp_path, WORKBENCH_SPARK_MASTER="local[1]", WORKBENCH_SPARK_LOG_LEVEL="WARN")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "raised-level-marker" in out.stderr  # a WARN from the JVM reaches stderr at level WARN
    assert "incubator" not in out.stderr  # the JVM's own notice is still filtered


def test_the_filter_drops_only_the_jvm_notices():
    assert JVM_NOISE.match("WARNING: Using incubator modules: jdk.incubator.vector\n")
    assert JVM_NOISE.match("Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties")
    assert not JVM_NOISE.match("26/12/01 20:49:02 ERROR Executor: Exception in task 0.0")
    assert load_settings(env={"WORKBENCH_SPARK_LOG_LEVEL": "INFO"}).spark_log_level == "INFO"
