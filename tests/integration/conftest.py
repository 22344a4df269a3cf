"""Fixtures of the integration tests that start shared real parts: a throw-away PostgreSQL cluster, and what the
HTTP serving tests share."""

from __future__ import annotations

import pytest

from tests.integration import pgtools


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster on a free 127.0.0.1 port for this test session (per xdist worker); skips with the
    reason where the server binaries or the driver are missing."""
    reason = pgtools.missing_reason()
    if reason:
        pytest.skip(reason)
    with pgtools.running_postgres() as pg:
        yield pg


@pytest.fixture(scope="session")
def setup(trained_model, serving_models, mlflow_settings, spark, tmp_path_factory):
    """What the HTTP serving tests share (test_serving_http.py and test_serving_bandit.py, one scheduling unit in
    the root conftest.py, so it is built once): settings with their own lookup cache and prediction log, the
    registered versions, 40 raw rows and each version's expected scores for them."""
    from workbench import registry
    from workbench.serving.fastpath import snapshot_sample
    from workbench.serving.model import snapshot_lookups

    from ..serving_support import SERVING_MODEL, expected_scores, raw_rows

    versions = serving_models
    settings = mlflow_settings.with_overrides(
        serving_cache_dir=str(tmp_path_factory.mktemp("cache")),
        predictions_dir=str(tmp_path_factory.mktemp("predictions")),
    )
    snapshot_lookups(settings, ["flights_context"], spark)
    spec = trained_model.spec
    snapshot_sample(settings, spec, spark)  # so `workbench serve` subprocesses start without Spark
    raw = raw_rows(spec, mlflow_settings, spark, n=40)
    expected = {
        v: expected_scores(raw, registry.model_uri(SERVING_MODEL, versions[k]), spec, mlflow_settings, spark)
        for k, v in (("lightgbm", str(versions["lightgbm"])), ("logistic", str(versions["logistic"])))
    }
    return settings, versions, raw, expected
