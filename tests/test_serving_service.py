"""The service's request path on a model built in the test (no Spark, no registry): raw JSON -> validation ->
compiled plan -> answers equal to the pipeline's, every answered row in the prediction log (through its
write-ahead file), the shadow compared, and a version whose step the compiler does not know served through the
pandas path with /readyz saying so."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from workbench import features
from workbench.estimators import build_pipeline
from workbench.model_contract import ModelSpec
from workbench.serving.fastpath import attach
from workbench.serving.model import Domain, LoadedModel
from workbench.serving.options import ServeOptions
from workbench.serving.predlog import PredictionLog
from workbench.serving.service import Service

from .serving_support import LoopThread
from .test_serving_compiled import CATEGORICAL, NUMERIC, data


def loaded(pipe, version: int) -> LoadedModel:
    X, y = data(2000)
    pipe.fit(X, y)
    spec = ModelSpec("none", tuple(NUMERIC + CATEGORICAL), tuple(NUMERIC), tuple(CATEGORICAL), "t", "classification")
    kinds = {**dict.fromkeys(NUMERIC, "number"), **dict.fromkeys(CATEGORICAL, "string")}
    model = LoadedModel(
        "m",
        version,
        "champion",
        spec,
        pipe,
        features.get("none").prepare(lookups={}),
        Domain(),
        spec.raw_columns,
        kinds,
    )
    model.input_example = X.head(5)
    attach(model)
    return model


@pytest.fixture(scope="module")
def service(repo_settings, tmp_path_factory):
    from lightgbm import LGBMClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MinMaxScaler

    folder = tmp_path_factory.mktemp("predictions")
    options = ServeOptions("m", shadow="shadow", reload_interval=0, fallback="none", timeout=30.0)
    plog = PredictionLog(folder.as_uri(), "m", roll_seconds=3600)
    svc = Service(repo_settings, options, predlog=plog)
    loop = LoopThread()
    loop.run(svc.start(load=False))
    champion = loaded(build_pipeline(NUMERIC, CATEGORICAL, LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1)), 1)
    pandas_only = build_pipeline(NUMERIC, CATEGORICAL, LogisticRegression(max_iter=300))
    pandas_only.set_params(preprocess__num__scale=MinMaxScaler())
    shadow = loaded(pandas_only, 2)
    svc.swap("champion", champion, initial=True)
    svc.swap("shadow", shadow, initial=True)
    svc.ready = True
    yield svc, loop, champion, shadow
    loop.run(svc.close())
    loop.stop()


def test_answers_equal_the_pipeline_and_are_logged(service):
    svc, loop, champion, shadow = service
    assert champion.path == "compiled (lightgbm booster)"
    assert shadow.path.startswith("pandas (MinMaxScaler")
    X, _ = data(300, seed=7)
    rows = X.astype(object).where(X.notna(), None).to_dict("records")  # full precision (to_json keeps 10 digits)
    for i, r in enumerate(rows):
        r["request_id"] = f"q{i}"
    answers = []
    for chunk in range(0, 300, 50):
        response = loop.run(svc.invoke("predict", json.dumps(rows[chunk : chunk + 50]).encode(), "application/json"))
        assert response.status == 200
        answers += json.loads(response.body)["predictions"]
    ours = np.array([a["prediction"] for a in answers])
    expected = champion.pipeline.predict_proba(X)[:, 1]
    assert np.abs(ours - expected).max() <= 1e-12
    metrics = svc.metrics_response().body.decode()
    syncs = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("workbench_serving_predlog_wal_syncs")
    ]
    # acknowledged means logged, at most one sync per batch: 6 requests of 50 rows, and the shadow's batches
    assert syncs and 0 < syncs[0] <= 12
    readiness = json.loads(svc.readiness().body)
    assert readiness["variants"]["champion"]["path"].startswith("compiled")
    assert readiness["variants"]["shadow"]["path"].startswith("pandas")
    loop.run(svc.shadow_lane.close())  # let the shadow finish before reading the log
    svc.predlog.flush()
    logged = pd.concat([pq.read_table(f).to_pandas() for f in svc.predlog.files()])
    answered = logged[~logged.shadow]
    assert sorted(answered.request_id) == sorted(f"q{i}" for i in range(300))
    assert set(NUMERIC + CATEGORICAL) <= set(logged.columns)
    by_id = answered.set_index("request_id")
    assert np.allclose(by_id.loc[[f"q{i}" for i in range(300)], "a"].to_numpy(), X["a"].to_numpy(), equal_nan=True)
    shadowed = logged[logged.shadow]
    assert len(shadowed) == 300 and set(shadowed.model_version) == {"2"}
    assert (
        np.abs(
            shadowed.set_index("request_id").loc[[f"q{i}" for i in range(300)], "prediction"].to_numpy()
            - shadow.pipeline.predict_proba(X)[:, 1]
        ).max()
        <= 1e-12
    )


def test_settled_heap_is_skipped_by_the_collector_until_a_reload_releases_it():
    import gc
    import weakref

    from workbench.serving.service import settle_heap

    class Node:
        pass

    node = Node()
    node.loop = node  # a cycle: only the cyclic collector can free it
    ref = weakref.ref(node)
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert ref() is not None  # frozen: full collections no longer scan (or pause on) what was loaded
        settle_heap(release=True)  # after a hot reload: what the old version left in cycles is freed
        assert ref() is None
    finally:
        gc.unfreeze()


def test_request_ids_are_unique_time_ordered_and_a_forked_worker_draws_its_own():
    import os
    import time

    from workbench.serving.service import new_request_id

    before = f"{time.time_ns() // 1_000_000:012x}"
    ids = [new_request_id() for _ in range(3000)]  # several blocks of the random pool
    assert len(set(ids)) == len(ids) and all(len(i) == 28 for i in ids)
    assert all(before <= i[:12] for i in ids) and [i[:12] for i in ids] == sorted(i[:12] for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker forked after the parent filled its pool
        os.write(write, ",".join(new_request_id()[12:] for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1 << 16).decode().split(",")
    os.waitpid(pid, 0)
    parent = [new_request_id()[12:] for _ in range(50)]
    assert len(child) == 50 and not set(child) & set(parent)
