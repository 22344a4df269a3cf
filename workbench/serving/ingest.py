"""Bulk outcomes: rewards known later (days after the predictions), joined to served requests and stored.

    ingest(settings, "flights-late", "flight_outcomes", on="request_id", reward_column="arrived_late")
    ingest_frame(settings, "flights-late", frame, on="entity_id", reward_column="converted")   # pandas rows

What `workbench experiments ingest` runs (a scheduled job can run it). The dataset is read through the governed
loader (`workbench.data.load`: the caller's grants, masks and audit apply), only the key, the reward and the
optional time column. Joined on `request_id`, each row rewards that request; joined on `entity_id`, each row
rewards the entity's latest served request not yet rewarded (served before the row's `time_column`, when given).
Unlike `/feedback`, which refuses a bad batch whole, a bulk load stores every good row and counts the rest
(unknown ids, ids already rewarded, bad rewards): an outcome table usually covers more than one experiment.
Then the shares are recomputed and the stop rule applied, as after a `/feedback` batch; serving workers pick the
new shares up within their refresh interval.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ..config import Settings
from ..errors import ServingError
from .outcomes import Outcome, OutcomeStore

__all__ = ["ingest", "ingest_frame", "JOIN_KEYS"]

JOIN_KEYS = ("request_id", "entity_id")


def ingest(
    settings: Settings,
    model_name: str,
    dataset: str,
    on: str = "request_id",
    reward_column: str = "reward",
    time_column: str | None = None,
    where: str | None = None,
    promote_winner: bool = False,
    spark=None,
) -> dict[str, Any]:
    from ..data import load

    columns = [on, reward_column, *([time_column] if time_column else [])]
    frame = load(
        dataset, columns=columns, where=where, purpose="experiment outcomes", settings=settings, spark=spark
    ).toPandas()
    return ingest_frame(
        settings, model_name, frame, on, reward_column, time_column, promote_winner, source=f"dataset:{dataset}"
    )


def ingest_frame(
    settings: Settings,
    model_name: str,
    frame,
    on: str = "request_id",
    reward_column: str = "reward",
    time_column: str | None = None,
    promote_winner: bool = False,
    source: str = "bulk",
) -> dict[str, Any]:
    """Store the rewards of `frame` (pandas); returns {rows, stored, skipped: {problem code: count}, experiment}."""
    from .experiment import Experiment
    from .metrics import Metrics
    from .options import ServeOptions

    if on not in JOIN_KEYS:
        raise ServingError(f"--on takes {' or '.join(JOIN_KEYS)}; found '{on}'.")
    missing = [c for c in (on, reward_column, time_column) if c and c not in frame.columns]
    if missing:
        raise ServingError(
            f"The outcome rows have no column {', '.join(missing)}; name the right one (--reward-column, --on)."
        )
    store = OutcomeStore.for_model(settings, model_name)
    state = store.state()
    options = ServeOptions(
        model_name,
        alias=state.get("primary") or "champion",
        feedback=True,
        bandit=state.get("policy") if state.get("arms") else None,
        arms=list(state.get("arms") or []),
        min_share=state.get("min_share", 0.05),
        epsilon=state.get("epsilon", 0.1),
        reward=state.get("reward", "binary"),
        stop_at=state.get("stop_at", 0.95),
        min_outcomes=state.get("min_outcomes", 200),
        promote_winner=promote_winner,
        refresh_interval=0,
    )
    skipped: Counter = Counter()
    keys = frame[on].astype(object).where(frame[on].notna(), None).tolist()
    rewards = frame[reward_column].tolist()
    if on == "entity_id":
        times = frame[time_column].tolist() if time_column else [None] * len(keys)
        ids = []
        for eid, t in zip(keys, times):
            before = None if t is None else (t.timestamp() if hasattr(t, "timestamp") else float(t))
            found = store.latest_unrewarded([str(eid)], before).get(str(eid)) if eid is not None else None
            ids.append(found)
            if found is None:
                skipped["NO_UNREWARDED_REQUEST"] += 1
    else:
        ids = [None if k is None else str(k) for k in keys]
    items = []
    for index, (rid, reward) in enumerate(zip(ids, rewards)):
        if rid is None:
            continue
        value = _reward(reward)
        if value is None:
            skipped["BAD_REWARD"] += 1
            continue
        items.append(Outcome(index, rid, value))
    experiment = Experiment(settings, options, Metrics(), store=store)
    try:
        stored = 0
        for start in range(0, len(items), 5000):
            batch = _dedupe(items[start : start + 5000], skipped)
            problems = experiment.store.add_outcomes(batch, source, experiment.kind)
            if problems:
                bad = {p["index"] for p in problems}
                skipped.update(p["code"] for p in problems)
                batch = [i for i in batch if i.index not in bad]
                problems = experiment.store.add_outcomes(batch, source, experiment.kind)
                if problems:  # another writer rewarded some of them meanwhile
                    skipped.update(p["code"] for p in problems)
                    continue
            stored += len(batch)
        stop = experiment.recompute()  # the shares and the stop rule, as after a /feedback batch
        if stop is not None and promote_winner:
            experiment.promote(stop)
        return {"rows": len(frame), "stored": stored, "skipped": dict(skipped), "experiment": experiment.describe()}
    finally:
        experiment.close()


def _dedupe(items: list[Outcome], skipped: Counter) -> list[Outcome]:
    seen, out = set(), []
    for item in items:
        if item.request_id in seen:
            skipped["DUPLICATE"] += 1
            continue
        seen.add(item.request_id)
        out.append(item)
    return out


def _reward(value) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
