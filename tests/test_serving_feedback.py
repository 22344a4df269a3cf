"""Outcome feedback and bandit allocation in the service (models built in the test, no Spark, no registry, the
real SQLite outcome store): the bad-feedback corpus gets 4xx naming each problem and never 5xx, a request is
rewarded once, the shares move toward the rewarded arm, a new service on the same store keeps them, and
entities keep their arm."""

from __future__ import annotations

import json

import pytest

from workbench.serving.options import ServeOptions
from workbench.serving.service import Service

from .serving_support import LoopThread
from .test_serving_compiled import CATEGORICAL, NUMERIC, data
from .test_serving_service import loaded

JSON = "application/json"


def bandit_options(**extra) -> ServeOptions:
    values = dict(
        shadow="shadow",
        reload_interval=0,
        fallback="none",
        timeout=30.0,
        log_predictions=False,
        bandit="thompson",
        arms=["champion", "challenger"],
        min_share=0.05,
        stop_at=0,  # no stop here (the simulation test covers the rule)
        refresh_interval=0,
    )
    values.update(extra)
    return ServeOptions("m", **values)


@pytest.fixture(scope="module")
def models():
    from lightgbm import LGBMClassifier
    from sklearn.linear_model import LogisticRegression

    from workbench.estimators import build_pipeline

    lgbm = loaded(build_pipeline(NUMERIC, CATEGORICAL, LGBMClassifier(n_estimators=10, verbose=-1, n_jobs=1)), 1)
    logistic = loaded(build_pipeline(NUMERIC, CATEGORICAL, LogisticRegression(max_iter=200)), 2)
    return lgbm, logistic


@pytest.fixture(scope="module")
def settings(repo_settings, tmp_path_factory):
    return repo_settings.with_overrides(predictions_dir=str(tmp_path_factory.mktemp("predictions")))


def start(settings, options, models, loop) -> Service:
    svc = Service(settings, options, predlog=None)
    loop.run(svc.start(load=False))
    lgbm, logistic = models
    for name, model in (("champion", lgbm), ("challenger", logistic), ("shadow", logistic)):
        if name in svc.variants or name == options.shadow:
            svc.swap(name, model, initial=True)
    svc.ready = True
    return svc


@pytest.fixture(scope="module")
def loop():
    loop = LoopThread()
    yield loop
    loop.stop()


def rows(n: int, prefix: str, entity: bool = False, seed: int = 0) -> list[dict]:
    X, _ = data(n, seed=seed)
    out = X.astype(object).where(X.notna(), None).to_dict("records")
    for i, r in enumerate(out):
        r["request_id"] = f"{prefix}{i}"
        if entity:
            r["entity_id"] = f"user-{i}"
    return out


def predict(svc, loop, payload) -> list[dict]:
    response = loop.run(svc.invoke("predict", json.dumps(payload).encode(), JSON))
    assert response.status == 200, response.body
    return json.loads(response.body)["predictions"]


def feedback(svc, loop, payload, raw: bytes | None = None, content_type: str = JSON):
    body = raw if raw is not None else json.dumps(payload).encode()
    response = loop.run(svc.feedback(body, content_type))
    return response.status, json.loads(response.body)


def test_bad_feedback_gets_4xx_naming_the_problem(settings, models, loop):
    svc = start(settings.with_overrides(), bandit_options(), models, loop)
    try:
        answered = predict(svc, loop, rows(4, "bad"))
        rid, arm = answered[0]["request_id"], answered[0]["variant"]
        assert feedback(svc, loop, {"request_id": rid, "reward": 1})[0] == 200
        corpus = [
            ({"request_id": "never-served", "reward": 1}, 404, "UNKNOWN_REQUEST_ID"),
            ({"request_id": rid, "reward": 0}, 409, "ALREADY_REWARDED"),
            ([{"request_id": answered[1]["request_id"], "reward": 1}] * 2, 422, "DUPLICATE"),
            ({"request_id": answered[1]["request_id"], "reward": "yes"}, 422, "BAD_REWARD_TYPE"),
            ({"request_id": answered[1]["request_id"], "reward": None}, 422, "BAD_REWARD_TYPE"),
            ({"request_id": answered[1]["request_id"], "reward": [1]}, 422, "BAD_REWARD_TYPE"),
            ({"request_id": answered[1]["request_id"], "reward": 0.5}, 422, "BAD_REWARD"),  # binary experiment
            ({"request_id": answered[1]["request_id"]}, 422, "MISSING_FIELD"),
            ({"reward": 1}, 422, "MISSING_FIELD"),
            ({"request_id": 12, "reward": 1}, 422, "BAD_REQUEST_ID"),
            ({"request_id": "a\nb", "reward": 1}, 422, "BAD_REQUEST_ID"),
            ({"request_id": answered[1]["request_id"], "reward": 1, "extra": 2}, 422, "UNKNOWN_FIELD"),
            ({"request_id": answered[1]["request_id"], "reward": 1, "variant": "shadow"}, 422, "SHADOW_ROW"),
            ({"request_id": answered[1]["request_id"], "reward": 1, "variant": "nope"}, 422, "WRONG_VARIANT"),
            ([1, 2], 422, "BAD_ITEM"),
            ([], 400, "BAD_REQUEST"),
            ("just a string", 400, "BAD_REQUEST"),
        ]
        for payload, status, code in corpus:
            got, body = feedback(svc, loop, payload)
            assert got == status, (payload, body)
            assert body["error_code"] == code or code in {p["code"] for p in body.get("problems", [])}, body
            assert "message" in body
        for raw, status, code in [
            (b'{"request_id": "' + answered[1]["request_id"].encode() + b'", "reward": NaN}', 422, "NON_FINITE_REWARD"),
            (b'{"request_id": "x", "reward": Infinity}', 422, "NON_FINITE_REWARD"),
            (b'{"request_id": "x", "reward": 1e999}', 422, "NON_FINITE_REWARD"),
            (b'{"request_id": "x", "reward": ' + b"9" * 400 + b"}", 422, "NON_FINITE_REWARD"),
            (b'{"request_id": ', 400, "MALFORMED_JSON"),
            (b"", 400, "EMPTY_BODY"),
            (b"[" * 100_000, 400, "MALFORMED_JSON"),
        ]:
            got, body = feedback(svc, loop, None, raw=raw)
            assert got == status and code in (body["error_code"], *[p["code"] for p in body.get("problems", [])])
        assert feedback(svc, loop, {"request_id": rid, "reward": 1}, content_type="text/plain")[0] == 415
        # a batch with one bad item stores nothing: the good one can still be sent afterwards
        good = {"request_id": answered[2]["request_id"], "reward": 1}
        status, body = feedback(svc, loop, [good, {"request_id": "never-served", "reward": 1}])
        assert status == 404 and body["problems"][0]["index"] == 1
        assert feedback(svc, loop, [good])[0] == 200
        state = json.loads(svc.readiness().body)["experiment"]
        assert state["arms"][arm]["outcomes"] >= 1
        assert sum(a["outcomes"] for a in state["arms"].values()) == 2
    finally:
        loop.run(svc.close())


def test_shares_move_to_the_rewarded_arm_and_survive_a_restart(settings, models, loop, tmp_path):
    local = settings.with_overrides(predictions_dir=str(tmp_path))
    svc = start(local, bandit_options(), models, loop)
    try:
        first = json.loads(svc.readiness().body)["experiment"]["arms"]
        assert first["champion"]["share"] == pytest.approx(0.5, abs=0.05)
        for round_ in range(6):
            answered = predict(svc, loop, rows(100, f"r{round_}-", seed=round_))
            rewards = [
                {"request_id": a["request_id"], "reward": int(a["variant"] == "challenger" or i % 10 == 0)}
                for i, a in enumerate(answered)
            ]
            assert feedback(svc, loop, rewards)[0] == 200
        arms = json.loads(svc.readiness().body)["experiment"]["arms"]
        assert arms["challenger"]["share"] > 0.9 and arms["champion"]["share"] >= 0.05
        assert arms["challenger"]["p_best"] > 0.95
        later = [a["variant"] for a in predict(svc, loop, rows(200, "late-"))]
        assert later.count("challenger") > 150 and later.count("champion") >= 1
        metrics = svc.metrics_response().body.decode()
        assert 'workbench_serving_experiment_arm_share{arm="challenger"}' in metrics
    finally:
        loop.run(svc.close())
    again = start(local, bandit_options(), models, loop)
    try:
        kept = json.loads(again.readiness().body)["experiment"]["arms"]
        assert kept["challenger"]["share"] == arms["challenger"]["share"]
        assert kept["challenger"]["outcomes"] == arms["challenger"]["outcomes"]
        # the restarted service still knows the earlier request ids: rewarded once, across restarts
        assert feedback(again, loop, {"request_id": "r0-0", "reward": 1})[0] == 409
    finally:
        loop.run(again.close())


def test_the_stop_rule_fires_once_and_freezes_the_shares(settings, models, loop, tmp_path):
    local = settings.with_overrides(predictions_dir=str(tmp_path))
    options = bandit_options(stop_at=0.95, min_outcomes=60)
    svc, other = start(local, options, models, loop), start(local, options, models, loop)  # two workers
    try:
        stopped_by = []
        for round_ in range(8):
            answered = predict(svc, loop, rows(40, f"st{round_}-", seed=round_))
            rewards = [{"request_id": a["request_id"], "reward": int(a["variant"] == "challenger")} for a in answered]
            half = len(rewards) // 2
            for worker, part in ((svc, rewards[:half]), (other, rewards[half:])):
                status, body = feedback(worker, loop, part)
                assert status == 200
                if body["experiment"]["stopped"]:
                    stopped_by.append(worker)
            if stopped_by:
                break
        assert stopped_by, "the stop rule never fired"
        state = json.loads(other.readiness().body)["experiment"]
        assert state["winner"]["arm"] == "challenger" and state["winner"]["p_best"] >= 0.95
        assert state["winner"]["outcomes"] >= 60
        frozen = {a: v["share"] for a, v in state["arms"].items()}
        more = predict(svc, loop, rows(40, "after-"))
        status, body = feedback(svc, loop, [{"request_id": a["request_id"], "reward": 1} for a in more])
        assert status == 200 and {a: v["share"] for a, v in body["experiment"]["arms"].items()} == frozen
        assert body["experiment"]["winner"]["at"] == state["winner"]["at"]  # recorded once
        assert "workbench_serving_experiment_stopped 1.0" in svc.metrics_response().body.decode()
    finally:
        loop.run(svc.close())
        loop.run(other.close())


def test_entities_keep_their_arm_until_the_ttl(settings, models, loop, tmp_path):
    local = settings.with_overrides(predictions_dir=str(tmp_path))
    now = [1000.0]
    svc = start(local, bandit_options(sticky_ttl=60), models, loop)
    svc.experiment.clock = lambda: now[0]
    try:
        first = {a["entity_id"]: a["variant"] for a in predict(svc, loop, rows(200, "s1-", entity=True))}
        assert set(first.values()) == {"champion", "challenger"}
        for attempt in range(3):
            again = {a["entity_id"]: a["variant"] for a in predict(svc, loop, rows(200, f"s2{attempt}-", entity=True))}
            assert again == first
        # another service on the same store (another worker, or a restart) sees the same stuck entities
        other = start(local, bandit_options(sticky_ttl=60), models, loop)
        other.experiment.clock = lambda: now[0]
        try:
            assert {a["entity_id"]: a["variant"] for a in predict(other, loop, rows(200, "s3-", entity=True))} == first
        finally:
            loop.run(other.close())
        now[0] += 61  # past the TTL: entities are drawn again (some move)
        moved = {a["entity_id"]: a["variant"] for a in predict(svc, loop, rows(200, "s4-", entity=True))}
        assert moved != first
    finally:
        loop.run(svc.close())


def test_a_fixed_split_takes_feedback_too(settings, models, loop, tmp_path):
    local = settings.with_overrides(predictions_dir=str(tmp_path))
    options = ServeOptions(
        "m",
        split={"challenger": 50},
        feedback=True,
        reload_interval=0,
        fallback="none",
        timeout=30.0,
        log_predictions=False,
    )
    svc = start(local, options, models, loop)
    try:
        answered = predict(svc, loop, rows(50, "f-", entity=True))
        assert {a["variant"] for a in answered} == {"champion", "challenger"}
        rewards = [{"request_id": a["request_id"], "reward": True} for a in answered]
        assert feedback(svc, loop, rewards)[0] == 200
        arms = json.loads(svc.readiness().body)["experiment"]["arms"]
        assert sum(a["outcomes"] for a in arms.values()) == 50 and arms["champion"]["share"] is None
        from workbench.serving import openapi

        assert "/feedback" in openapi.build(svc)["paths"]
    finally:
        loop.run(svc.close())


def test_without_an_experiment_feedback_is_404(settings, models, loop):
    options = ServeOptions("m", reload_interval=0, fallback="none", log_predictions=False)
    svc = start(settings, options, models, loop)
    try:
        status, body = feedback(svc, loop, {"request_id": "x", "reward": 1})
        assert status == 404 and body["error_code"] == "FEEDBACK_DISABLED"
        from workbench.serving import openapi

        assert "/feedback" not in openapi.build(svc)["paths"]
    finally:
        loop.run(svc.close())


@pytest.mark.parametrize(
    "extra, words",
    [
        (dict(arms=["champion"]), "two or more"),
        (dict(arms=["a", "b"]), "primary alias"),
        (dict(split={"challenger": 10}), "leave out --split"),
        (dict(min_share=0.6), "--min-share"),
        (dict(bandit="ucb"), "thompson"),
        (dict(arms=["champion", "shadow"]), "shadow"),
    ],
)
def test_bad_bandit_options_are_refused(extra, words):
    from workbench.errors import ServingError

    with pytest.raises(ServingError, match=words):
        bandit_options(**extra).check()


def test_bulk_outcomes_join_on_request_or_entity_id(settings, models, loop, tmp_path):
    import pandas as pd

    from workbench.serving.ingest import ingest_frame

    local = settings.with_overrides(predictions_dir=str(tmp_path))
    svc = start(local, bandit_options(), models, loop)
    try:
        by_request = predict(svc, loop, rows(20, "b-"))
        by_entity = predict(svc, loop, rows(10, "e-", entity=True))
    finally:
        loop.run(svc.close())
    frame = pd.DataFrame(
        {
            "request_id": [a["request_id"] for a in by_request] + ["unknown-id", by_request[0]["request_id"]],
            "converted": [1] * 20 + [1, 0],
        }
    )
    result = ingest_frame(local, "m", frame, on="request_id", reward_column="converted")
    assert result["stored"] == 20 and result["skipped"] == {"UNKNOWN_REQUEST_ID": 1, "DUPLICATE": 1}
    entities = pd.DataFrame({"entity_id": ["user-0", "user-1", "nobody"], "converted": [1.0, 0.0, 1.0]})
    result = ingest_frame(local, "m", entities, on="entity_id", reward_column="converted")
    assert result["stored"] == 2 and result["skipped"] == {"NO_UNREWARDED_REQUEST": 1}
    again = ingest_frame(local, "m", entities, on="entity_id", reward_column="converted")
    assert again["stored"] == 0  # each entity's only request is rewarded now
    arms = result["experiment"]["arms"]
    assert sum(a["outcomes"] for a in arms.values()) == 22
    answered = {a["request_id"]: a["variant"] for a in by_request + by_entity}
    assert sum(a["pulls"] for a in arms.values()) == len(answered)
