"""Bandit allocation through real HTTP: `workbench serve --bandit thompson --workers 2` on real registered models
(a temp SQLite MLflow store). Predictions, then /feedback rewarding one arm: the shares move toward it, the stop
rule fires and promotes it (the reason in the alias history), a restart keeps the shares, the winner and the
stuck entities, and the bad-feedback corpus gets 4xx, never 5xx."""

from __future__ import annotations

import math
import signal

import pytest

from workbench import registry

from ..serving_support import records
from .test_serving_http import NAME, WAIT, _eventually, _serve

pytestmark = pytest.mark.integration

ARGS = (
    "--alias", "arm-a", "--bandit", "thompson", "--arms", "arm-a,arm-b", "--min-share", "0.05",
    "--stop-at", "0.95", "--min-outcomes", "120", "--promote-winner", "--workers", "2",
)  # fmt: skip


def _experiment(client):
    return client.get("/readyz").json()["experiment"]


def _predict(client, rows, prefix):
    out = []
    for i, row in enumerate(rows):
        response = client.post("/predict", json={**row, "request_id": f"{prefix}-{i}"})
        assert response.status_code == 200, response.text
        out.append(response.json()["predictions"][0])
    return out


def test_feedback_moves_the_shares_stops_promotes_and_survives_a_restart(setup, tmp_path):
    settings, versions, raw, _ = setup
    registry.set_alias(NAME, "arm-a", versions["lightgbm"], reason="bandit test", settings=settings)
    registry.set_alias(NAME, "arm-b", versions["logistic"], reason="bandit test", settings=settings)
    rows = [{**r, "entity_id": f"user-{i}"} for i, r in enumerate(records(raw))]
    proc, client = _serve(setup, tmp_path, *ARGS)
    try:
        start = _experiment(client)
        assert start["allocation"] == "thompson" and not start["stopped"]
        assert start["arms"]["arm-a"]["share"] == pytest.approx(0.5, abs=0.05)
        first = _predict(client, rows, "p0")
        arm_of = {a["entity_id"]: a["variant"] for a in first}
        assert set(arm_of.values()) == {"arm-a", "arm-b"}
        # the bad-feedback corpus: 4xx naming the problem, never 5xx, nothing stored
        rid = first[0]["request_id"]
        for body, status, code in [
            ({"request_id": "never-served", "reward": 1}, 404, "UNKNOWN_REQUEST_ID"),
            ([{"request_id": rid, "reward": 1}] * 2, 422, "DUPLICATE"),
            ({"request_id": rid, "reward": "high"}, 422, "BAD_REWARD_TYPE"),
            ({"request_id": rid, "reward": 1, "variant": "challenger"}, 422, "SHADOW_ROW"),
        ]:
            response = client.post("/feedback", json=body)
            assert response.status_code == status, response.text
            assert code in [p["code"] for p in response.json()["problems"]]
        nan = client.post("/feedback", content=b'{"request_id": "%s", "reward": NaN}' % rid.encode(),
                          headers={"content-type": "application/json"})  # fmt: skip
        assert nan.status_code == 422 and nan.json()["problems"][0]["code"] == "NON_FINITE_REWARD"
        assert client.post("/feedback", content=b"{", headers={"content-type": "application/json"}).status_code == 400
        # rewards: arm-b converts, arm-a does not; rounds of single-row requests spread over both workers
        shares_b = [start["arms"]["arm-b"]["share"]]
        answered = first
        for round_ in range(1, 8):
            feedback = [{"request_id": a["request_id"], "reward": int(a["variant"] == "arm-b")} for a in answered]
            response = client.post("/feedback", json=feedback)
            assert response.status_code == 200, response.text
            again = client.post("/feedback", json=feedback[:1])
            assert again.status_code == 409 and again.json()["error_code"] == "ALREADY_REWARDED"
            state = response.json()["experiment"]
            shares_b.append(state["arms"]["arm-b"]["share"])
            if state["stopped"]:
                break
            answered = _predict(client, [{k: v for k, v in r.items() if k != "entity_id"} for r in rows], f"p{round_}")
        assert shares_b[-1] > shares_b[0] and shares_b[-1] > 0.9, shares_b
        winner = _eventually(lambda: _experiment(client).get("winner", {}).get("promoted"), "the promotion")
        assert winner["moved"] and winner["version"] == versions["logistic"]
        history = registry.history(NAME, "arm-a", settings)
        assert history[-1]["version"] == versions["logistic"] and "P(best)" in history[-1]["reason"]
        stopped = _experiment(client)
        assert stopped["winner"]["arm"] == "arm-b" and stopped["winner"]["p_best"] >= 0.95
        metrics = client.get("/metrics").text
        assert "workbench_serving_experiment_stopped 1.0" in metrics
        # sticky: every entity keeps its arm, whichever worker answers
        assert {a["entity_id"]: a["variant"] for a in _predict(client, rows, "sticky")} == arm_of
        frozen = {arm: v["share"] for arm, v in stopped["arms"].items()}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(WAIT)
        client.close()
    proc, client = _serve(setup, tmp_path, *ARGS)
    try:
        kept = _experiment(client)
        assert {arm: v["share"] for arm, v in kept["arms"].items()} == frozen
        assert kept["stopped"] and kept["winner"]["arm"] == "arm-b"
        assert {a["entity_id"]: a["variant"] for a in _predict(client, rows, "after")} == arm_of
        assert client.post("/feedback", json={"request_id": rid, "reward": 0}).status_code == 409
        assert math.isclose(sum(frozen.values()), 1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(WAIT)
        client.close()
