"""Shared fixtures: one Spark session for the whole run (it takes ~9 s to start), settings that
point at the repo's sample lake (read-only) or at a temporary home (for tests that write)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from workbench.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# Tests must not pick up a developer's own overrides.
for _key in [k for k in os.environ if k.startswith("WORKBENCH_")]:
    del os.environ[_key]


@pytest.fixture(scope="session")
def repo_settings() -> Settings:
    """Settings of the checkout: the sample lake built by `make lake` and the committed catalog."""
    settings = load_settings(env={"WORKBENCH_HOME": str(REPO)})
    if not (REPO / "lake" / "raw" / "airlines").exists():
        pytest.skip("the sample lake is missing: run `make lake` (make test does it)")
    return settings


@pytest.fixture(scope="session")
def spark(repo_settings):
    from workbench.spark import get_spark

    session = get_spark(
        "workbench-tests", repo_settings.with_overrides(spark_master="local[2]", spark_shuffle_partitions=4)
    )
    yield session
    session.stop()


@pytest.fixture
def tmp_home(tmp_path: Path) -> Path:
    """An empty project home with its own lake, reports and MLflow store."""
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- models (workbench.training / registry / gate): one small model trained once per session ----
@pytest.fixture(scope="session")
def mlflow_settings(repo_settings, tmp_path_factory) -> Settings:
    """The sample lake, but a throw-away MLflow store (SQLite + artifacts in a temp dir)."""
    store = tmp_path_factory.mktemp("mlflow")
    return repo_settings.with_overrides(
        mlflow_tracking_uri=f"sqlite:///{store}/mlflow.db",
        mlflow_artifacts=str(store / "mlartifacts"),
        model_name="flights-late-test",
    )


@pytest.fixture(scope="session")
def trained_model(spark, mlflow_settings):
    """A LightGBM 'arrives 15+ min late' model on January, registered as version 1 with @champion."""
    from workbench.training import train

    return train(
        "flights",
        train_where="month = 1",
        params={"n_estimators": 20, "num_leaves": 15},
        register=True,
        alias="champion",
        settings=mlflow_settings,
        spark=spark,
    )


@pytest.fixture(scope="session")
def serving_models(trained_model, mlflow_settings) -> dict[str, int]:
    """Versions of the model 'flights-late-serving' for the serving tests (tests/serving_support.py says which)."""
    from .serving_support import SERVING_MODEL, register_models

    return register_models(trained_model, mlflow_settings, SERVING_MODEL)
