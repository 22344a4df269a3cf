"""The serving core without a server: parsing and validation, routing, the circuit breaker, the
prediction log, micro-batching, and a real Service (real registered models) for fallbacks."""

from __future__ import annotations

import asyncio
import gc
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from workbench import registry
from workbench.errors import RequestRejected, ServingError
from workbench.serving import protocol
from workbench.serving.batching import Job, MicroBatcher
from workbench.serving.contract import RequestContract
from workbench.serving.model import Lookups, snapshot_lookups
from workbench.serving.options import ServeOptions
from workbench.serving.predlog import DROPPED, FIXED_COLUMNS, QUEUED, LogFull, PredictionLog
from workbench.serving.protocol import Limits, parse_payload
from workbench.serving.routing import CircuitBreaker, Router, parse_fallback, parse_split
from workbench.serving.service import Service

from .serving_support import SERVING_MODEL, UNSEEN_CARRIER, LoopThread, raw_rows, records

LIMITS = Limits(max_body_bytes=10_000, max_rows=5, max_string_chars=16)
SECRET = "s3cr3t-value"
CONTRACT = RequestContract(
    {"distance": "number", "year": "integer", "carrier": "string", "time_hour": "timestamp"}, LIMITS
)
GOOD = {"distance": 100, "year": 2013, "carrier": "AA", "time_hour": "2013-02-01T05:00:00Z"}


def rejected(fn, *args) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        fn(*args)
    return info.value


# ---- parsing ---------------------------------------------------------------------------------------
def test_the_three_wire_formats_give_the_same_records():
    one = parse_payload(json.dumps(GOOD).encode(), "application/json", LIMITS)
    many = parse_payload(json.dumps([GOOD, GOOD]).encode(), "application/json; charset=utf-8", LIMITS)
    split = parse_payload(
        json.dumps({"dataframe_split": {"columns": list(GOOD), "data": [list(GOOD.values())]}}).encode(),
        "application/json",
        LIMITS,
    )
    recs = parse_payload(json.dumps({"dataframe_records": [GOOD]}).encode(), "application/json", LIMITS)
    assert one == ("records", [GOOD]) and many[1] == [GOOD, GOOD]
    assert split == ("dataframe_split", [GOOD]) and recs == ("dataframe_records", [GOOD])


@pytest.mark.parametrize(
    "body, content_type, code",
    [
        (b"{}", "text/plain", "UNSUPPORTED_MEDIA_TYPE"),
        (b"{}", None, "UNSUPPORTED_MEDIA_TYPE"),
        (b"   ", "application/json", "EMPTY_BODY"),
        (b'{"distance": ', "application/json", "MALFORMED_JSON"),
        (b"\xff\xfe{}", "application/json", "MALFORMED_JSON"),
        (b"x" * 10_001, "application/json", "PAYLOAD_TOO_LARGE"),
        (json.dumps([GOOD] * 6).encode(), "application/json", "TOO_MANY_ROWS"),
        (b"[]", "application/json", "BAD_REQUEST"),
        (b'"just a string"', "application/json", "BAD_REQUEST"),
        (b'{"instances": [[1, 2]]}', "application/json", "UNSUPPORTED_FORMAT"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', "application/json", "BAD_REQUEST"),
        (b'{"dataframe_split": {}, "dataframe_records": []}', "application/json", "BAD_REQUEST"),
    ],
)
def test_unparseable_payloads_are_named_and_mapped_to_4xx(body, content_type, code):
    exc = rejected(parse_payload, body, content_type, LIMITS)
    assert exc.code == code and 400 <= protocol.ERROR_STATUS[code] < 500
    assert exc.problems and all(p.get("field") for p in exc.problems)


def test_every_error_code_maps_to_an_http_status():
    assert all(isinstance(s, int) and 400 <= s < 600 for s in protocol.ERROR_STATUS.values())
    assert {c for c, s in protocol.ERROR_STATUS.items() if s >= 500} == {
        "INTERNAL_ERROR",
        "NOT_READY",
        "OVERLOADED",
        "MODEL_UNAVAILABLE",
    }


# ---- validation ------------------------------------------------------------------------------------
def test_validation_names_every_problem_and_never_the_values():
    bad = [
        {**GOOD, "distance": SECRET, "carrier": SECRET * 3},
        {k: v for k, v in GOOD.items() if k != "year"},
        {**GOOD, "time_hour": SECRET, "year": 2013.5},
        {**GOOD, "request_id": {"x": SECRET}},
    ]
    fmt, recs = parse_payload(json.dumps(bad).encode(), "application/json", LIMITS)
    exc = rejected(CONTRACT.validate, recs, "r")
    found = {(p["code"], p["field"]): p for p in exc.problems}
    assert set(found) == {
        ("wrong_type", "distance"),
        ("string_too_long", "carrier"),
        ("missing_column", "year"),
        ("invalid_timestamp", "time_hour"),
        ("wrong_type", "year"),
        ("invalid_id", "request_id"),
    }
    assert found[("missing_column", "year")]["rows"] == [1]
    assert SECRET not in json.dumps(exc.problems) and SECRET not in str(exc)


def test_nan_and_infinity_are_rejected_by_field():
    body = (
        b'[{"distance": NaN, "year": 2013, "carrier": "AA", "time_hour": null},'
        b' {"distance": 1e999, "year": -Infinity, "carrier": "AA", "time_hour": null}]'
    )
    _, recs = parse_payload(body, "application/json", LIMITS)
    exc = rejected(CONTRACT.validate, recs, "r")
    assert {(p["code"], p["field"]) for p in exc.problems} == {("non_finite", "distance"), ("non_finite", "year")}


def test_valid_rows_are_typed_and_get_ids():
    rows, rids, eids, warnings = CONTRACT.validate(
        [{**GOOD, "entity_id": "N1", "extra": 1}, {**GOOD, "distance": None}], "base"
    )
    assert rows[0]["distance"] == 100.0 and rows[0]["time_hour"].tzinfo is None and rows[1]["distance"] is None
    assert rids == ["base-0", "base-1"] and eids == ["N1", None]
    assert warnings[0]["field"] == "extra" and warnings[0]["code"] == "unknown_column"


# ---- routing, breaker, options --------------------------------------------------------------------------
def test_the_split_is_stable_per_entity_and_widening_keeps_assignments():
    router = Router("champion", {"challenger": 20}, salt="m")
    first = {f"e{i}": router.route(f"e{i}", "r") for i in range(2000)}
    assert first == {f"e{i}": router.route(f"e{i}", "other-request") for i in range(2000)}
    share = sum(v == "challenger" for v in first.values()) / len(first)
    assert 0.16 < share < 0.24
    wider = Router("champion", {"challenger": 40}, salt="m")
    assert all(wider.route(e, "r") == "challenger" for e, v in first.items() if v == "challenger")
    assert Router("champion", {"challenger": 20}, salt="another-model").route("e1", "r") in ("champion", "challenger")


def test_the_circuit_breaker_opens_then_tries_again_after_the_cooldown():
    now = [0.0]
    breaker = CircuitBreaker(failures=3, cooldown=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.record(False)
    assert breaker.allow()
    breaker.record(False)
    assert breaker.is_open and not breaker.allow()
    now[0] = 10.5
    assert breaker.allow() and not breaker.allow()  # half-open: one trial at a time
    breaker.record(False)
    assert breaker.is_open
    now[0] = 21
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state == "closed" and breaker.allow()


def test_fallback_and_split_options_are_checked():
    assert [s.kind for s in parse_fallback("previous,constant:0.25")] == ["previous", "constant"]
    assert parse_fallback("none") == ()
    for bad in ("constant:abc", "nearest"):
        with pytest.raises(ServingError, match="serving_fallback"):
            parse_fallback(bad)
    assert parse_split(["challenger=10", "canary=2.5"]) == {"challenger": 10.0, "canary": 2.5}
    for bad in (["challenger"], ["challenger=0"], ["a=60", "b=50"]):
        with pytest.raises(ServingError, match="split"):
            parse_split(bad)


# ---- prediction log -------------------------------------------------------------------------------------
def frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(start, start + n)],
            "entity_id": None,
            "timestamp": pd.Timestamp.now(tz="UTC"),
            "model_version": "1",
            "variant": "champion",
            "shadow": False,
            "prediction": 0.5,
            "latency_ms": 1.0,
            "fallback": False,
            "fallback_reason": None,
            "out_of_domain": [[] for _ in range(n)],
            "distance": 1.0,
            "carrier": "AA",
        }
    )


def test_the_log_rolls_by_size_and_flushes_on_close(tmp_path):
    plog = PredictionLog(tmp_path.as_uri(), "m", roll_seconds=3600, roll_rows=10).start()
    for k in range(5):
        assert plog.submit(frame(5, 5 * k)) == QUEUED
    plog.close()
    files = plog.files()
    assert len(files) >= 2 and all(f.parent.name.startswith("date=") for f in files)
    table = pd.concat([pq.read_table(f).to_pandas() for f in files])
    assert sorted(table.request_id) == sorted(f"r{i}" for i in range(25))
    assert tuple(table.columns[: len(FIXED_COLUMNS)]) == FIXED_COLUMNS
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_full_log_queue_drops_and_counts_or_blocks_never_silently(tmp_path):
    drop = PredictionLog(tmp_path.as_uri(), "d", queue_rows=10, on_full="drop")  # writer not started: the queue fills
    assert drop.submit(frame(8)) == QUEUED and drop.submit(frame(5)) == DROPPED
    assert drop.dropped_rows == 5
    block = PredictionLog(tmp_path.as_uri(), "b", queue_rows=10, on_full="block", block_timeout=0.2)
    block.submit(frame(8))
    with pytest.raises(LogFull, match="queue stayed full"):
        block.submit(frame(5))
    assert block.dropped_rows == 0


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    folder = tmp_path / "m" / "date=2026-01-01"
    folder.mkdir(parents=True)
    dead = folder / ".part-20260101T000000-999999999-000001.parquet.tmp"
    dead.write_bytes(b"PAR1 half a file")
    PredictionLog(tmp_path.as_uri(), "m").start().close()
    assert not dead.exists()


# ---- micro-batching --------------------------------------------------------------------------------------------
def test_concurrent_jobs_are_predicted_together():
    seen: list[int] = []

    def run(jobs):
        seen.append(sum(j.rows for j in jobs))
        for job in jobs:
            job.claim()
        return [job.payload * 2 for job in jobs]

    async def scenario():
        batcher = MicroBatcher("t", run, max_rows=64, max_wait=0.05).start()
        loop = asyncio.get_running_loop()
        jobs = [Job(1, i, loop.create_future()) for i in range(40)]
        for job in jobs:
            batcher.submit(job)
        results = [await job.future for job in jobs]
        await batcher.close()
        return results

    assert asyncio.run(scenario()) == [2 * i for i in range(40)]
    assert len(seen) < 40 and max(seen) > 1


# ---- a real Service: fallback and circuit breaker ---------------------------------------------------------------
CLOCK = [0.0]  # the breakers' clock in these tests: moved by hand, so no test waits for a cooldown


PRIMARY = "core-primary"  # an alias of these tests only: first LightGBM, then 'fragile'


@pytest.fixture(scope="module")
def models(serving_models):
    return serving_models


@pytest.fixture(scope="module")
def fragile_service(models, trained_model, mlflow_settings, spark, tmp_path_factory):
    """Serving 'fragile' as the primary; the previous primary (LightGBM) is the first fallback."""
    name = SERVING_MODEL
    registry.set_alias(name, PRIMARY, models["lightgbm"], reason="test", settings=mlflow_settings)
    registry.set_alias(name, PRIMARY, models["fragile"], reason="test", settings=mlflow_settings)
    settings = mlflow_settings.with_overrides(
        serving_cache_dir=str(tmp_path_factory.mktemp("cache")),
        predictions_dir=str(tmp_path_factory.mktemp("predictions")),
    )
    snapshot_lookups(settings, ["flights_context"], spark)
    options = ServeOptions.from_settings(
        settings,
        name,
        alias=PRIMARY,
        fallback="previous,constant:0.5",
        breaker_failures=3,
        breaker_cooldown=30.0,
        reload_interval=0,
        timeout=60.0,
    )
    loop = LoopThread()
    service = Service(settings, options, lookups=Lookups(settings), clock=lambda: CLOCK[0])
    loop.run(service.start(background=False))
    raw = raw_rows(trained_model.spec, mlflow_settings, spark, n=12)
    yield service, loop, records(raw)
    loop.run(service.close())
    loop.stop()


def call(service_loop, rows) -> tuple[int, dict]:
    service, loop = service_loop
    response = loop.run(service.invoke("predict", json.dumps(rows).encode(), "application/json"))
    return response.status, json.loads(response.body)


def test_the_service_loads_the_previous_champion_as_fallback(fragile_service, models):
    service, _, _ = fragile_service
    assert service.ready
    assert gc.get_freeze_count() > 10_000  # loaded, then frozen: no full collection pauses on the libraries
    assert service.variants[PRIMARY].model.version == models["fragile"]
    assert service.fallback_model.version == models["lightgbm"]


def test_a_failing_row_falls_back_alone_and_is_marked(fragile_service, models):
    service, loop, rows = fragile_service
    bad = {**rows[0], "carrier": UNSEEN_CARRIER}
    status, body = call((service, loop), [rows[1], bad, rows[2]])
    assert status == 200
    good1, fell, good2 = body["predictions"]
    assert not good1["fallback"] and not good2["fallback"] and good1["model_version"] == str(models["fragile"])
    assert fell["fallback"] and fell["fallback_reason"] == "error" and fell["model_version"] == str(models["lightgbm"])
    assert "carrier" in fell["out_of_domain"]
    service.variants[PRIMARY].breaker.record(True)


def test_repeated_failures_open_the_circuit_until_the_cooldown(fragile_service, models):
    service, loop, rows = fragile_service
    bad = {**rows[0], "carrier": UNSEEN_CARRIER}
    for _ in range(3):
        status, body = call((service, loop), [bad])
        assert status == 200 and body["predictions"][0]["fallback_reason"] == "error"
    status, body = call((service, loop), [rows[3]])  # a good row, but the circuit is open
    assert body["predictions"][0]["fallback"] and body["predictions"][0]["fallback_reason"] == "circuit_open"
    CLOCK[0] += 31  # the cooldown passes
    status, body = call((service, loop), [rows[3]])  # half-open trial succeeds and closes it
    assert not body["predictions"][0]["fallback"] and body["predictions"][0]["model_version"] == str(models["fragile"])
    assert service.variants[PRIMARY].breaker.state == "closed"


def test_past_the_time_budget_the_constant_answers(fragile_service):
    service, loop, rows = fragile_service
    service.options.timeout = 0.0  # every model misses a zero budget, the previous champion too
    try:
        status, body = call((service, loop), [rows[4]])
    finally:
        service.options.timeout = 60.0
    answer = body["predictions"][0]
    assert status == 200 and answer["fallback"] and answer["fallback_reason"] == "timeout"
    assert answer["model_version"] == "constant" and answer["prediction"] == 0.5


def test_without_a_fallback_a_failure_is_a_503_not_a_500(fragile_service):
    service, loop, rows = fragile_service
    steps, service.fallback_steps = service.fallback_steps, ()
    try:
        status, body = call((service, loop), [{**rows[0], "carrier": UNSEEN_CARRIER}])
    finally:
        service.fallback_steps = steps
        service.variants[PRIMARY].breaker.record(True)
    assert status == 503 and body["error_code"] == "MODEL_UNAVAILABLE"


def test_fallback_answers_are_in_the_prediction_log(fragile_service):
    service, loop, rows = fragile_service
    service.predlog.flush()
    logged = pd.concat([pq.read_table(f).to_pandas() for f in service.predlog.files()])
    assert {"error", "circuit_open", "timeout"} <= set(logged.fallback_reason.dropna())
    assert set(logged.loc[logged.fallback_reason == "timeout", "model_version"]) == {"constant"}
    assert not logged.shadow.any() and {"carrier", "distance", "temp"} <= set(logged.columns)


def test_a_log_that_cannot_keep_up_refuses_the_request_rather_than_lose_its_row(fragile_service, tmp_path):
    service, loop, rows = fragile_service
    stuck = PredictionLog(tmp_path.as_uri(), "stuck", queue_rows=1, on_full="block", block_timeout=0.2)
    stuck.submit(frame(1))  # never started: nothing drains this queue
    real, service.predlog = service.predlog, stuck
    try:
        status, body = call((service, loop), [rows[5]])
    finally:
        service.predlog = real
    assert status == 503 and body["error_code"] == "OVERLOADED"
    assert call((service, loop), [rows[5]])[0] == 200
