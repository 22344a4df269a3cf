"""Real models for the serving tests, registered under a model name of their own (so alias moves in these
tests never touch the session's `flights-late-test` champion), plus an event loop in a thread.
The `serving_models` fixture (tests/conftest.py) registers them once per session.

Versions: 1 = the session's LightGBM model (`trained_model`); 2 = a logistic regression on the same
spec ('challenger'); 3 = 'fragile': one-hot encoding with handle_unknown='error', so it raises on a
carrier it never saw (a model that fails at serving time on some inputs, but passes its smoke test);
4 = 'broken': its pipeline expects columns the spec does not provide, so it fails its smoke test.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading

import mlflow
import numpy as np
import pandas as pd

from workbench import registry
from workbench.estimators import build_pipeline
from workbench.model_contract import METADATA_KEY

from .conftest import REPO

UNSEEN_CARRIER = "Q9"  # a carrier code no training row has
SERVING_MODEL = "flights-late-serving"


def _log(pipeline, spec, X: pd.DataFrame, settings) -> str:
    import skops.io
    from mlflow.models import infer_signature

    registry.configure(settings)
    mlflow.set_experiment("serving-tests")
    example = X.head(5)
    trusted = sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(example, pipeline.predict_proba(example)),
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            serialization_format="skops",
            skops_trusted_types=trusted,
            metadata={METADATA_KEY: spec.to_metadata()},
        )
    return info.model_uri


def register_models(trained, settings, name: str) -> dict[str, int]:
    """Register versions 1-4 (see the module docstring) under `name`; champion -> 1, challenger -> 2, fragile -> 3."""
    from sklearn.linear_model import LogisticRegression

    spec, X, y = trained.spec, trained.holdout, trained.holdout_label
    versions = {"lightgbm": registry.register(trained.model_uri, name, alias="champion", settings=settings).version}

    logistic = build_pipeline(list(spec.numeric), list(spec.categorical), LogisticRegression(max_iter=300)).fit(X, y)
    versions["logistic"] = registry.register(
        _log(logistic, spec, X, settings), name, alias="challenger", settings=settings
    ).version

    fragile = build_pipeline(list(spec.numeric), list(spec.categorical), LogisticRegression(max_iter=300))
    fragile.set_params(preprocess__cat__onehot__handle_unknown="error", preprocess__cat__onehot__min_frequency=None)
    nulls = pd.DataFrame({c: [None, None] for c in X.columns}).astype(
        X.dtypes.to_dict()
    )  # '(missing)' is a known category
    fragile.fit(pd.concat([X, nulls], ignore_index=True), pd.concat([y, pd.Series([0, 1])], ignore_index=True))
    versions["fragile"] = registry.register(
        _log(fragile, spec, X, settings), name, alias="fragile", settings=settings
    ).version

    renamed = X.rename(columns={spec.numeric[0]: "not_a_column"})
    broken = build_pipeline(
        ["not_a_column", *spec.numeric[1:]], list(spec.categorical), LogisticRegression(max_iter=50)
    ).fit(renamed, y)
    versions["broken"] = registry.register(_log(broken, spec, renamed, settings), name, settings=settings).version
    return versions


def raw_rows(spec, settings, spark, where: str = "month = 2 AND day <= 2", n: int = 40) -> pd.DataFrame:
    from workbench.data import load

    return (
        load("flights", columns=list(spec.raw_columns), where=where, settings=settings, spark=spark).toPandas().head(n)
    )


def records(raw: pd.DataFrame) -> list[dict]:
    return json.loads(raw.to_json(orient="records", date_format="iso"))


def expected_scores(raw: pd.DataFrame, model_uri: str, spec, settings, spark) -> np.ndarray:
    """What pyfunc.predict says for these raw rows, decorated with lookups read through Spark.

    MLflow's registry URI is process-wide and other tests in this worker point it at their own stores,
    so point it at `settings`' store before resolving `models:/...`."""
    registry.configure(settings)
    model = mlflow.pyfunc.load_model(model_uri)
    X = spec.prepare(raw, spec.decorator(settings, spark))
    return np.asarray(model.predict(X))[:, 1]


def serve_env(settings, predictions_dir: str, reload_interval_ms: str, **extra: str) -> dict[str, str]:
    """The environment of a `workbench serve` subprocess configured by environment only: this process's, without
    its WORKBENCH_ settings, plus the store, cache and log of `settings`, the prediction log in `predictions_dir`
    and alias polling every `reload_interval_ms` (0: never)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        {
            "WORKBENCH_HOME": str(REPO),
            "WORKBENCH_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "WORKBENCH_MLFLOW_ARTIFACTS": settings.mlflow_artifacts,
            "WORKBENCH_SERVING_CACHE_DIR": settings.serving_cache_dir,
            "WORKBENCH_PREDICTIONS_DIR": predictions_dir,
            "WORKBENCH_SERVING_TIMEOUT_MS": "60000",
            "WORKBENCH_SERVING_RELOAD_INTERVAL_MS": reload_interval_ms,
            "PYTHONPATH": str(REPO),
            **extra,
        }
    )
    return env


class LoopThread:
    """An asyncio event loop running in a thread; `run(coro)` waits for the result."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
