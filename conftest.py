"""pytest hooks for the whole suite (tests/ and the nbval run of notebooks/); fixtures live in tests/conftest.py."""

from __future__ import annotations

import os

import pytest

# The suite starts dozens of short-lived driver JVMs (one per test worker, notebook kernel, job, server). For
# them HotSpot's C1 tier alone and the serial collector take about a third less CPU than the defaults (measured
# on 2 cores: 20-22 s against 29-34 s for a session with a few small jobs); `make test` is CPU-bound. Only the
# tests' JVMs: the product's keep HotSpot's defaults, which pay off on long jobs.
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")

# Tests long enough to deserve a worker of their own: each node id starting with one of these is its own unit
# (each parameter separately), so the two long runs of every notebook do not queue behind each other on one
# worker. Their module fixtures are built again on the worker that runs them.
OWN_UNIT = ("tests/test_generality.py::test_every_notebook_runs_on_the_dataset_and_its_windows_alone[",)

# Files that share a session fixture costly enough to build once (about 40 s): each is run in the unit of the
# file it names, after that file's tests, on the same worker.
SAME_UNIT = {"tests/integration/test_serving_bandit.py": "tests/integration/test_serving_http.py"}  # `setup`


# Units in the order they start, longest first (a unit is a file, the notebooks, or an OWN_UNIT test; about the
# seconds each took in a run of 2026-12-02): with two workers the long ones begin at once and the many short
# files fill in behind them, so that neither worker is left with a long unit while the other idles. (A worker
# holds back its last test until it has more work, so a unit of one test starts with the next one queued
# behind it: the two generality runs are not adjacent.)
LONG_FIRST = (
    "notebooks/",  # 330 s: seven notebooks under nbval, in order
    "tests/test_generality.py::test_every_notebook_runs_on_the_dataset_and_its_windows_alone[weather]",  # 250 s
    "tests/integration/test_serving_http.py",  # 310 s, with test_serving_bandit.py (SAME_UNIT)
    "tests/integration/test_spark_cluster.py",  # 250 s
    "tests/test_generality.py::test_every_notebook_runs_on_the_dataset_and_its_windows_alone[diabetes]",  # 230 s
    "tests/test_drift.py",
    "tests/test_serving.py",
    "tests/integration/test_jobs_e2e.py",
    "tests/integration/test_airflow.py",
    "tests/integration/test_postgres.py",
    "tests/test_explain.py",
    "tests/integration/test_hub.py",
)


def _rank(nodeid: str) -> int:
    return next((i for i, prefix in enumerate(LONG_FIRST) if nodeid.startswith(prefix)), len(LONG_FIRST))


def pytest_collection_modifyitems(config, items):
    """Under xdist, put the units of `LONG_FIRST` first (a stable sort: the order within a unit is kept)."""
    if config.getvalue("dist") == "loadfile":
        items.sort(key=lambda item: _rank(item.nodeid))


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs on pytest-xdist workers with `--dist loadfile`: each test file stays on one worker,
    so its module fixtures (a trained model, a running hub or server) are built once. On top of that, all
    notebooks form one unit, run in order on one worker: 03_explain and 05_evaluate use the model that
    02_train registers in the repo's MLflow store; the tests named in `OWN_UNIT` are units of their own, and the files of `SAME_UNIT` join another file's unit; units start longest first (`LONG_FIRST`). (xdist's own `loadgroup` relies on rewriting node ids,
    which pytest 9.2 no longer allows.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # units start in collection order: `LONG_FIRST`

    class NotebooksTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(OWN_UNIT):
                return nodeid
            path = nodeid.split("::", 1)[0]
            return "notebooks" if path.endswith(".ipynb") else SAME_UNIT.get(path, path)

        def _reschedule(self, node) -> None:
            """Give a worker its next unit only when it runs the last test of its current one (xdist's
            default queues a second unit early, so two long units could line up on one worker)."""
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return NotebooksTogether(config, log)
