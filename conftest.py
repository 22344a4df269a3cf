"""pytest hooks for the whole suite (tests/ and the nbval run of notebooks/); fixtures live in tests/conftest.py."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs on pytest-xdist workers with `--dist loadfile`: each test file stays on one worker,
    so its module fixtures (a trained model, a running hub or server) are built once. On top of that, all
    notebooks form one unit, run in order on one worker: 03_explain and 05_evaluate use the model that
    02_train registers in the repo's MLflow store. (xdist's own `loadgroup` relies on rewriting node ids,
    which pytest 9.2 no longer allows.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class NotebooksTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "notebooks" if path.endswith(".ipynb") else path

    return NotebooksTogether(config, log)
