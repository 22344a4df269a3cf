"""workbench.drift: the Spark statistics agree with Evidently on the same rows, flag a real shift and
not noise; categorical chi-square; thresholds -> status; model monitoring; the alert webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from workbench import drift
from workbench.alerts import alert_payload, notify, post_json
from workbench.errors import DriftError

NUMERICAL = ["dep_delay", "distance", "hour"]
CATEGORICAL = ["carrier", "origin"]
FEATURES = NUMERICAL + CATEGORICAL
# Wasserstein from 100 reference-quantile bins (per-bin counts and sums) against Evidently's exact
# distance on the raw values: the stated tolerance.
WASSERSTEIN_REL, WASSERSTEIN_ABS = 0.03, 0.002


@pytest.fixture(scope="module")
def months(spark, repo_settings):
    """The first halves of January (reference) and July (current) of the sample flights, cached:
    July really drifted. (About 14k rows each: enough for stable statistics, small for Evidently.)"""
    from workbench.data import load

    ref = load(
        "flights", columns=FEATURES, where="month = 1 AND day <= 15", settings=repo_settings, spark=spark
    ).cache()
    cur = load(
        "flights", columns=FEATURES, where="month = 7 AND day <= 15", settings=repo_settings, spark=spark
    ).cache()
    yield ref, cur
    ref.unpersist()
    cur.unpersist()


def test_spark_statistics_agree_with_evidently_on_the_same_rows(months):
    ref, cur = months
    ref_pdf, cur_pdf = ref.toPandas(), cur.toPandas()  # the same rows, in memory, for Evidently
    # PSI and Jensen-Shannon with Evidently's binning: equal to float precision.
    ours = drift.compute_drift(ref, cur, FEATURES, binning="sturges")
    for method in ("psi", "jensenshannon"):
        theirs = drift.evidently_report(
            ref_pdf, cur_pdf, NUMERICAL, CATEGORICAL, {"numerical_method": method, "categorical_method": method}
        )
        assert theirs.methods == dict.fromkeys(FEATURES, method)
        for f in FEATURES:
            assert getattr(ours.feature(f), method) == pytest.approx(theirs.scores[f], rel=1e-9, abs=1e-12), (method, f)
    # Wasserstein (binned, our default quantile bins) within the stated tolerance; chi-square p-values equal.
    thresholds = {"numerical_method": "wasserstein", "categorical_method": "chisquare"}
    ours = drift.compute_drift(ref, cur, FEATURES, thresholds=thresholds)
    theirs = drift.evidently_report(ref_pdf, cur_pdf, NUMERICAL, CATEGORICAL, thresholds)
    for f in NUMERICAL:
        assert ours.feature(f).wasserstein == pytest.approx(
            theirs.scores[f], rel=WASSERSTEIN_REL, abs=WASSERSTEIN_ABS
        ), f
    for f in CATEGORICAL:
        assert ours.feature(f).chisquare_p == pytest.approx(theirs.scores[f], rel=1e-6, abs=1e-300), f
    assert ours.reference_rows == len(ref_pdf) and ours.current_rows == len(cur_pdf)
    assert ours.feature("dep_delay").reference_missing == pytest.approx(ref_pdf["dep_delay"].isna().mean())


def test_injected_shift_is_flagged_and_a_random_split_is_not(months):
    january, _ = months
    a, b = january.randomSplit([0.5, 0.5], seed=7)
    same = drift.compute_drift(a, b, FEATURES)
    assert same.drifted == [] and same.status == "ok"
    assert max(f.psi for f in same.features) < 0.02

    shifted = drift.compute_drift(a, b.withColumn("dep_delay", F.col("dep_delay") + 60), FEATURES)
    assert shifted.drifted == ["dep_delay"]
    dep = shifted.feature("dep_delay")
    assert dep.psi > 1 and dep.wasserstein > 1 and dep.current_mean == pytest.approx(dep.reference_mean + 60, abs=2)
    assert shifted.status == "warn"  # 1 of 5 features: the default share_warn is 0.2
    assert shifted.metrics()["drift.share_drifted"] == pytest.approx(0.2)
    assert set(shifted.table()["feature"]) == set(FEATURES) and shifted.table()["feature"][0] == "dep_delay"


def test_categorical_chi_square_and_top_k(spark):
    from scipy.stats import chisquare

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"c": rng.choice(list("abc"), 4000, p=[0.5, 0.3, 0.2])})
    same = pd.DataFrame({"c": rng.choice(list("abc"), 3000, p=[0.5, 0.3, 0.2])})
    moved = pd.DataFrame({"c": rng.choice(list("abcd"), 3000, p=[0.3, 0.3, 0.2, 0.2])})  # 'd' is new
    thresholds = {"categorical_method": "chisquare"}
    ref_df = spark.createDataFrame(ref)

    quiet = drift.compute_drift(ref_df, spark.createDataFrame(same), ["c"], thresholds=thresholds).feature("c")
    counts_ref, counts_cur = ref["c"].value_counts().sort_index(), same["c"].value_counts().sort_index()
    expected_p = chisquare(counts_cur.to_numpy(), counts_ref.to_numpy() * len(same) / len(ref))[1]
    assert quiet.kind == "categorical" and quiet.chisquare_p == pytest.approx(expected_p, rel=1e-9)
    assert not quiet.drifted and quiet.wasserstein is None

    loud = drift.compute_drift(ref_df, spark.createDataFrame(moved), ["c"], thresholds=thresholds)
    assert loud.feature("c").drifted and loud.feature("c").chisquare_p < 1e-6 and loud.status == "alert"

    folded = drift.compute_drift(ref_df, spark.createDataFrame(moved), ["c"], top_k=2)
    hist = folded.histograms["c"]
    assert folded.feature("c").bins == 3 and list(hist["label"]) == ["a", "b", drift.OTHER]
    assert hist.loc[hist["label"] == drift.OTHER, "current"].item() == pytest.approx((moved["c"] >= "c").mean())
    # missing values, however many, are counted apart and take none of the top_k places
    holes = moved.assign(c=moved["c"].where(rng.random(len(moved)) > 0.6))
    with_nulls = drift.compute_drift(ref_df, spark.createDataFrame(holes), ["c"], top_k=2)
    assert list(with_nulls.histograms["c"]["label"]) == ["a", "b", drift.OTHER]
    assert with_nulls.feature("c").current_missing == pytest.approx(holes["c"].isna().mean())


def test_vectorised_bins_equal_bin_index_on_awkward_values():
    """Binner (the histogram pass's bins) against bin_index and searchsorted: values on the edges and
    one float either side, infinities, heavy tails, ties, a large offset, a constant column."""
    from workbench.drift.kernels import distinct_edges

    rng = np.random.default_rng(5)
    samples = [
        rng.normal(0, 30, 5000),
        np.round(rng.exponential(5, 5000)),  # integers: many values exactly on an edge
        rng.lognormal(0, 4, 5000),  # edges crowd near 0: falls back to searchsorted
        rng.integers(0, 1000, 5000) + 1e12,  # a large offset: cells near the float resolution
        np.concatenate([rng.normal(0, 1e-6, 2500), rng.normal(0, 1e6, 2500)]),
        np.full(100, 3.0),
    ]
    for x in samples:
        edges = distinct_edges(np.quantile(x, np.linspace(0, 1, 101), method="inverted_cdf"))
        e = np.array(edges)
        probe = np.concatenate(
            [x, e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf), [np.inf, -np.inf, 1e308, -1e308, 0.0]]
        )
        binner = drift.Binner(edges)
        got = binner(probe)
        assert got.tolist() == [drift.bin_index(edges, v) for v in probe]
        assert got.max() <= binner.bins - 1 == len(edges)


def test_partition_histograms_equal_a_direct_count_on_mixed_batches():
    """The mapInArrow function on its own: Arrow batches holding both windows, nulls, NaN and infinities,
    against counts, sums and extremes taken directly with numpy and Python."""
    import pyarrow as pa

    from workbench.drift.histograms import COLUMNS, _PartitionHistograms

    rng = np.random.default_rng(11)
    n = 3000
    x = rng.normal(10, 5, n)
    x[rng.random(n) < 0.05] = np.nan
    x[:3] = [np.inf, -np.inf, 10.0]
    null = np.arange(n) % 97 == 1  # nulls as well as NaN
    w = rng.integers(0, 2, n).astype(np.int32)
    hour = rng.integers(0, 5, n).astype(float)
    cat = rng.choice(["a", "b", None], n, p=[0.6, 0.3, 0.1])
    edges = list(np.quantile(x[np.isfinite(x)], np.linspace(0, 1, 11)))
    kernel = _PartitionHistograms([(0, "x", edges, 10.0)], [(1, "hour", True, True), (2, "cat", False, False)])
    table = pa.table({"__w": w, "__c0": pa.array(x, mask=null), "__c1": hour, "__c2": cat})
    out = pa.Table.from_batches(list(kernel(table.to_batches(max_chunksize=700)))).to_pandas()
    assert list(out.columns) == COLUMNS
    out = out.groupby(["__w", "f", "b", "v"], dropna=False).agg(
        n=("n", "sum"), s=("s", "sum"), lo=("lo", "min"), hi=("hi", "max")
    )
    out = out.reset_index()
    binner = drift.Binner(edges)
    for window in (0, 1):
        mine = out[(out["__w"] == window) & (out["f"] == 0)]
        xs = x[(w == window) & ~null]
        present = xs[~np.isnan(xs)]
        assert mine.loc[mine["b"] == -1, "n"].sum() == (w == window).sum() - len(present)
        bins = np.searchsorted(binner.splits, present, side="right")
        binned = mine[mine["b"] >= 0].set_index("b")
        counts, sums = (
            np.bincount(bins, minlength=binner.bins),
            np.bincount(bins, weights=present, minlength=binner.bins),
        )
        assert binned["n"].astype(int).to_dict() == {b: int(c) for b, c in enumerate(counts) if c}
        np.testing.assert_allclose(binned["s"].to_numpy(), sums[counts > 0], rtol=1e-12)
        if counts[0]:
            assert binned.loc[0, "lo"] == present.min()
        if counts[-1]:
            assert binned.loc[binner.bins - 1, "hi"] == present.max()
        hours = out[(out["__w"] == window) & (out["f"] == 1) & out["v"].notna()].set_index("v")["n"]
        assert hours.astype(int).to_dict() == {
            str(int(k)): int(v) for k, v in pd.Series(hour[w == window]).value_counts().items()
        }
        cats = out[(out["__w"] == window) & (out["f"] == 2)]
        assert cats.loc[cats["v"].notna()].set_index("v")["n"].astype(int).to_dict() == {
            k: int(v) for k, v in pd.Series(cat[w == window]).value_counts().items()
        }
        assert cats.loc[cats["b"] == -1, "n"].sum() == sum(c is None for c in cat[w == window])


def _jobs_of(spark, run) -> int:
    """Spark jobs started by `run()`, counted by job group through the status tracker."""
    import uuid

    sc = spark.sparkContext
    group = f"drift-jobs-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "counting the jobs of one compute_drift call")
    try:
        run()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return len(sc.statusTracker().getJobIdsForGroup(group))


def test_spark_jobs_per_call_are_bounded_and_do_not_grow_with_the_features(spark):
    rng = np.random.default_rng(2)
    rows = 20_000
    data = {f"x{i}": rng.normal(i, 1 + i, rows) for i in range(12)}
    data |= {"flag": rng.integers(0, 2, rows), "c0": rng.choice(list("abcd"), rows), "c1": rng.choice(list("xy"), rows)}
    frame = pd.DataFrame(data)
    ref = spark.createDataFrame(frame.iloc[: rows // 2]).repartition(3).cache()
    cur = spark.createDataFrame(frame.iloc[rows // 2 :].assign(x0=lambda d: d["x0"] + 1)).repartition(3).cache()
    ref.count(), cur.count()
    try:
        few, many = ["x0", "flag", "c0"], [*[f"x{i}" for i in range(12)], "flag", "c0", "c1"]
        reports = {}
        counts = {
            (len(cols), binning): _jobs_of(
                spark,
                lambda c=cols, b=binning: reports.__setitem__((len(c), b), drift.compute_drift(ref, cur, c, binning=b)),
            )
            for cols in (few, many)
            for binning in ("quantile", "sturges")
        }
        for binning in ("quantile", "sturges"):
            # sturges: one more aggregation (two jobs with adaptive execution) counts the few-valued columns exactly
            assert counts[(3, binning)] == counts[(15, binning)] <= 9, counts
            for f in few:  # the same statistics for a feature, whatever else is computed with it
                assert reports[(3, binning)].feature(f).psi == pytest.approx(reports[(15, binning)].feature(f).psi)
        assert reports[(15, "quantile")].drifted == ["x0"]
    finally:
        ref.unpersist(), cur.unpersist()


def test_thresholds_decide_the_status():
    t = drift.Thresholds.from_dict({"share_warn": 0.2, "share_alert": 0.5, "feature": {"psi": 0.25}})
    assert [t.share_status(s) for s in (0.0, 0.19, 0.2, 0.49, 0.5, 1.0)] == [
        "ok",
        "ok",
        "warn",
        "warn",
        "alert",
        "alert",
    ]
    assert t.feature["psi"] == 0.25 and t.feature["jensenshannon"] == 0.1  # overrides merge with the defaults
    assert t.is_drift("psi", 0.25) and not t.is_drift("psi", 0.2)
    assert t.is_drift("chisquare", 0.01) and not t.is_drift("chisquare", 0.5)  # a p-value: low means drift
    assert [drift.performance_status(0.80, auc, t) for auc in (0.81, 0.79, 0.77, 0.74)] == ["ok", "ok", "warn", "alert"]
    assert drift.performance_status(None, 0.5, t) == "ok"
    assert drift.worst_status("ok", None, "warn") == "warn" and drift.worst_status("warn", "alert") == "alert"
    with pytest.raises(DriftError, match="unknown key.*shar_warn"):
        drift.Thresholds.from_dict({"shar_warn": 0.1})
    with pytest.raises(DriftError, match="categorical_method.*chisquare, jensenshannon, psi"):
        drift.Thresholds.from_dict({"categorical_method": "wasserstein"})
    with pytest.raises(DriftError, match="share_warn <= share_alert"):
        drift.Thresholds.from_dict({"share_warn": 0.6})


def test_bad_windows_and_features_are_named(months):
    ref, cur = months
    with pytest.raises(DriftError, match="current window has no rows"):
        drift.compute_drift(ref, cur.where("false"), ["distance"])
    with pytest.raises(DriftError, match="nope"):
        drift.compute_drift(ref, cur, ["distance", "nope"])


def test_binary_performance_matches_sklearn(spark):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 3000)
    score = np.clip(0.35 * y + 0.65 * rng.random(3000), 0, 1)
    df = spark.createDataFrame(pd.DataFrame({"p": score, "y": y.astype(float)}))
    perf = drift.binary_performance(df, "p", "y")
    assert perf.rows == 3000 and perf.positive_rate == pytest.approx(y.mean())
    assert perf.auc == pytest.approx(roc_auc_score(y, score), abs=1e-3)


def test_model_windows_give_prediction_performance_and_quality(spark, trained_model, mlflow_settings):
    """The registered model scored on January (its training month) and February (ten days each), on Spark."""
    from workbench import registry

    uri = registry.model_uri(mlflow_settings.model_name, "champion")
    windows = drift.load_windows(
        "flights",
        "month = 1 AND day <= 10",
        "month = 2 AND day <= 10",
        model=uri,
        settings=mlflow_settings,
        spark=spark,
    )
    try:
        assert windows.features == list(trained_model.spec.numeric) + list(trained_model.spec.categorical)
        assert windows.prediction == drift.PREDICTION and windows.label == drift.LABEL
        assert windows.training_metrics["roc_auc"] == pytest.approx(trained_model.metrics["roc_auc"])
        report = drift.compute_drift(windows.reference, windows.current, [drift.PREDICTION])
        assert 0 <= report.feature(drift.PREDICTION).psi < 1
        perf = drift.binary_performance(windows.current, windows.prediction, windows.label)
        assert 0.5 < perf.auc < 1 and 0 < perf.positive_rate < 1
        source, anomalies = drift.data_quality(windows, settings=mlflow_settings)
        assert source.startswith("training schema of") and list(anomalies.columns)[:2] == ["column", "kind"]
        moved = drift.window_explanation_drift(windows, rows=200, settings=mlflow_settings)
        assert len(moved) > 0 and {"feature", "reference", "current", "share_change"} <= set(moved.columns)
    finally:
        windows.release()


ENTITY_KEY = "concat_ws('-', year, month, day, carrier, flight, origin, hour, minute)"


def test_live_traffic_from_the_prediction_log_is_monitored_with_labels_that_arrive_later(
    spark, trained_model, mlflow_settings, tmp_path
):
    """Serve real February flights, then monitor the prediction log as the current window, labels joined on entity_id."""
    from workbench import registry
    from workbench.data import load
    from workbench.serving.model import Lookups, snapshot_lookups
    from workbench.serving.options import ServeOptions
    from workbench.serving.service import Service

    from .serving_support import LoopThread, records

    settings = mlflow_settings.with_overrides(
        serving_cache_dir=str(tmp_path / "cache"), predictions_dir=str(tmp_path / "log")
    )
    snapshot_lookups(settings, ["flights_context"], spark)
    raw_columns = list(trained_model.spec.raw_columns)
    rows = (
        load("flights", where="month = 2 AND day <= 3", settings=settings, spark=spark)
        .select(F.expr(ENTITY_KEY).alias("entity_id"), *raw_columns)
        .limit(300)
        .toPandas()
    )
    loop, service = (
        LoopThread(),
        Service(
            settings,
            ServeOptions.from_settings(settings, settings.model_name, reload_interval=0, timeout=60.0),
            lookups=Lookups(settings),
        ),
    )
    try:
        loop.run(service.start(background=False))
        answered = {}
        for batch in np.array_split(np.arange(len(rows)), 10):
            response = loop.run(
                service.invoke("predict", json.dumps(records(rows.iloc[batch])).encode(), "application/json")
            )
            assert response.status == 200
            answered.update({a["entity_id"]: a["prediction"] for a in json.loads(response.body)["predictions"]})
    finally:
        loop.run(service.close())  # flushes the log
        loop.stop()

    uri = registry.model_uri(settings.model_name, "champion")
    windows = drift.load_windows(
        "flights",
        "month = 1 AND day <= 10",
        "variant = 'champion'",
        model=uri,
        predictions=True,
        entity_key=ENTITY_KEY,
        settings=settings,
        spark=spark,
    )
    try:
        current = windows.current.select("entity_id", drift.PREDICTION, drift.LABEL).toPandas()
        assert len(current) == len(rows) and set(current["entity_id"]) == set(answered)
        logged = dict(zip(current["entity_id"], current[drift.PREDICTION]))
        assert all(logged[e] == pytest.approx(p) for e, p in answered.items())
        assert current[drift.LABEL].notna().mean() > 0.9  # cancelled flights never get a label
        perf = drift.binary_performance(
            windows.current.where(F.col(drift.LABEL).isNotNull()), drift.PREDICTION, drift.LABEL
        )
        assert 0.5 < perf.auc <= 1
        report = drift.compute_drift(windows.reference, windows.current, [drift.PREDICTION, "distance"])
        assert report.reference_rows > report.current_rows == len(rows)
    finally:
        windows.release()


# ---- the webhook -------------------------------------------------------------------------------------
class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.bodies.append((self.path, self.headers.get("Content-Type"), body))
        self.send_response(self.server.codes.pop(0) if self.server.codes else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies, server.codes = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=secret"
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_receives_the_alert_and_nothing_else(receiver, repo_settings):
    settings = repo_settings.with_overrides(webhook_url=receiver.url)
    payload = alert_payload(
        "04_drift_monitor", "alert", "3 of 5 features drifted", {"drift.share_drifted": 0.6}, run_id="r1"
    )
    assert notify("ok", payload, settings) is None and notify("warn", payload, settings) is None
    assert notify("alert", payload, repo_settings.with_overrides(webhook_url="")) is None
    result = notify("alert", payload, settings)
    assert result.delivered and result.status_code == 200 and len(receiver.bodies) == 1
    path, content_type, body = receiver.bodies[0]
    received = json.loads(body)
    assert path == "/hook?token=secret" and content_type == "application/json"
    assert received["status"] == "alert" and received["source"] == "04_drift_monitor" and received["run_id"] == "r1"
    assert received["metrics"] == {"drift.share_drifted": 0.6} and received["text"].startswith(
        "[ALERT] 04_drift_monitor"
    )


def test_webhook_retries_server_errors_and_reports_failures_without_the_url(receiver):
    receiver.codes = [503, 200]
    assert post_json(receiver.url, {"x": 1}, backoff=0).attempts == 2 and len(receiver.bodies) == 2
    receiver.codes = [400]
    refused = post_json(receiver.url, {"x": 1}, backoff=0)
    assert not refused.delivered and refused.attempts == 1 and "HTTP 400" in refused.error
    unreachable = post_json("http://127.0.0.1:9/hook?token=secret", {"x": 1}, attempts=2, backoff=0, timeout=2)
    assert (
        not unreachable.delivered and "could not be reached" in unreachable.error and "secret" not in unreachable.error
    )
