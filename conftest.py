"""pytest hooks for the whole suite (tests/ and the nbval run of notebooks/); fixtures live in tests/conftest.py."""

from __future__ import annotations

import pytest

# Tests long enough to deserve a worker of their own: each node id starting with one of these is its own unit
# (each parameter separately), so the two long runs of every notebook do not queue behind each other on one
# worker. Their module fixtures are built again on the worker that runs them.
OWN_UNIT = (
    "tests/test_generality.py::test_every_notebook_runs_on_the_dataset_and_its_windows_alone[",
    "tests/test_data_catalog.py::test_data_check_finds_the_leak_in_the_old_catalog_and_passes_the_shipped_one",
)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs on pytest-xdist workers with `--dist loadfile`: each test file stays on one worker,
    so its module fixtures (a trained model, a running hub or server) are built once. On top of that, all
    notebooks form one unit, run in order on one worker: 03_explain and 05_evaluate use the model that
    02_train registers in the repo's MLflow store; and the tests named in `OWN_UNIT` are units of their own. (xdist's own `loadgroup` relies on rewriting node ids,
    which pytest 9.2 no longer allows.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class NotebooksTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(OWN_UNIT):
                return nodeid
            path = nodeid.split("::", 1)[0]
            return "notebooks" if path.endswith(".ipynb") else path

    return NotebooksTogether(config, log)
