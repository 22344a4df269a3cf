"""An experiment in serving: outcome feedback for every served variant, and bandit allocation between arms.

`Service` holds one when `--feedback` or `--bandit` is given. It
- records which arm answered each request (and the shadow that also did) in the outcome store (`outcomes.py`):
  the request only queues the row; what is queued is committed in one transaction `FLUSH_S` later, on the event
  loop (group commit: a request costs microseconds, not a SQLite commit; no writer thread, whose GIL contention
  with the event loop measurably slowed single-client serving). `/feedback` first commits this worker's queue,
  and looks an unknown id up once more `UNKNOWN_RETRY_S` later (another worker's last batch). A killed process
  loses the rows still queued (milliseconds' worth): their feedback is then refused as unknown, while the
  prediction log still has them;
- answers `POST /feedback` (`feedback.py` parses; the store checks ids and writes, durably, all or nothing);
- with `--bandit thompson|epsilon-greedy --arms A,B[,...]`, routes each row: an entity keeps the arm it was
  given for `sticky_ttl` seconds (in the store, so every worker agrees); any other row draws an arm from the
  current shares. A draw is one random number against precomputed cumulative shares: the maths
  (`workbench.bandit`: posteriors, P(best) by Monte Carlo, shares with a floor) runs after each feedback batch,
  never per request, and its result goes to the store; every worker re-reads it at most every
  `refresh_interval` seconds, so all workers (and a restarted service) serve the same shares;
- applies the stop rule after each recomputation: when an arm's P(best) reaches `stop_at` with at least
  `min_outcomes` outcomes, it logs the winner, shows it in /readyz and /metrics, freezes the shares and, with
  `--promote-winner`, moves the primary alias to the winner's version through `workbench.registry` with the
  reason in the alias history (the hot reload then serves it). One worker records the stop (the store's
  `unless` write); only that one promotes.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import random
import time
from typing import Any

import numpy as np
from prometheus_client import Gauge

from .. import registry
from ..bandit import ArmStats, Policy, StopRule, p_best
from ..config import Settings
from ..errors import WorkbenchError
from .feedback import parse_feedback, rejection
from .outcomes import Assignment, OutcomeStore
from .protocol import Response, dumps

__all__ = ["Experiment"]

log = logging.getLogger("workbench.serving.experiment")

CHECKPOINT_S = 5.0  # the WAL is copied into the database file this often, off the event loop
FLUSH_S = 0.005  # answered rows are committed in one transaction per this window
UNKNOWN_RETRY_S = 0.2  # an id unknown here is looked up once more after this (another worker's last batch)


class Experiment:
    def __init__(self, settings: Settings, options, metrics, store: OutcomeStore | None = None, clock=time.time):
        self.settings = settings
        self.options = options
        self.model_name = options.model_name
        self.primary = options.alias
        self.arms: list[str] = list(options.arms) if options.bandit else [options.alias, *options.split]
        self.bandit = options.bandit
        self.kind = options.reward
        self.policy = Policy(options.bandit, options.min_share, options.epsilon) if options.bandit else None
        self.stop_rule = StopRule(options.stop_at, options.min_outcomes)
        self.store = store or OutcomeStore.for_model(settings, options.model_name)
        self.clock = clock
        self._rng = random.Random()
        self._np_rng = np.random.default_rng()
        self._sticky: dict[str, tuple[str, float]] = {}
        self._new_entities: dict[str, tuple[str, str, float]] = {}
        self.shares = np.full(len(self.arms), 1.0 / len(self.arms))
        self._cumulative = list(np.cumsum(self.shares))
        self.p_best = np.full(len(self.arms), 1.0 / len(self.arms))
        self.stats: list[ArmStats] = [ArmStats(a) for a in self.arms]
        self.winner: dict[str, Any] | None = None
        self._refreshed = -1e18
        self._pending: list[Assignment] = []
        self._pending_entities: list[tuple[str, str, float]] = []
        self._flush_scheduled = False
        self._checkpointed = time.monotonic()
        self._checkpointing = False
        self._init_metrics(metrics)
        self._start()

    # ---- state -------------------------------------------------------------------------------------------------
    def _start(self) -> None:
        state = self.store.state()
        if self.bandit and state.get("arms") != self.arms:
            if state.get("arms"):
                log.warning(
                    "The outcome store held an experiment on arms %s; starting a new allocation on %s.",
                    state.get("arms"),
                    self.arms,
                )
            self.store.put_state({"arms": self.arms, "shares": None, "p_best": None, "winner": None})
        if self.bandit:
            self.store.put_state(
                {
                    "policy": self.bandit,
                    "min_share": self.options.min_share,
                    "epsilon": self.options.epsilon,
                    "reward": self.kind,
                    "stop_at": self.options.stop_at,
                    "min_outcomes": self.options.min_outcomes,
                    "model": self.model_name,
                    "primary": self.primary,
                }
            )
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Re-read shares, P(best), the winner and the arm statistics from the store (at most every interval)."""
        now = time.monotonic()
        if not force and now - self._refreshed < self.options.refresh_interval:
            return
        self._refreshed = now
        state = self.store.state()
        self.stats = self.store.stats(self.arms)
        if self.bandit and state.get("arms") == self.arms:
            if state.get("shares"):
                self.shares = np.asarray(state["shares"], dtype=float)
                self._cumulative = list(np.cumsum(self.shares))
            if state.get("p_best"):
                self.p_best = np.asarray(state["p_best"], dtype=float)
            self.winner = state.get("winner") or None
        elif not self.bandit:
            self.p_best = p_best(self.stats, self.kind, self._np_rng)
        self._export()

    def recompute(self) -> dict[str, Any] | None:
        """Shares and P(best) from the outcomes so far, the stop rule, written to the store. Returns a new stop."""
        self.stats = self.store.stats(self.arms)
        probabilities = p_best(self.stats, self.kind, self._np_rng)
        if not self.bandit:
            self.p_best = probabilities
            self._export()
            return None
        state = self.store.state()
        if state.get("winner"):  # stopped (here or by another worker): the shares stay frozen
            self.refresh(force=True)
            return None
        shares = self.policy.shares(self.stats, self.kind, probabilities)
        outcomes = sum(s.n for s in self.stats)
        self.store.put_state(
            {"shares": shares.tolist(), "p_best": probabilities.tolist()},
            allocation=(outcomes, shares.tolist(), probabilities.tolist()),
        )
        stop = None
        best = self.stop_rule.winner(self.stats, probabilities)
        if best is not None:
            stop = {
                "arm": self.arms[best],
                "p_best": float(probabilities[best]),
                "outcomes": outcomes,
                "threshold": self.stop_rule.threshold,
                "at": time.time(),
                "promoted": None,
            }
            if not self.store.put_state({"winner": stop}, unless="winner"):
                stop = None  # another worker recorded the stop first
        self.refresh(force=True)
        if stop is not None:
            log.warning(
                "Experiment on model '%s' stopped: arm '%s' is best with P(best) %.3f >= %.2f after %d outcomes; "
                "shares are frozen at %s.",
                self.model_name,
                stop["arm"],
                stop["p_best"],
                stop["threshold"],
                outcomes,
                dict(zip(self.arms, np.round(self.shares, 3).tolist())),
            )
        return stop

    def promote(self, stop: dict[str, Any]) -> None:
        """Move the primary alias to the winner's version, the reason in the alias history (blocking: MLflow)."""
        arm = stop["arm"]
        reason = (
            f"bandit ({self.bandit}) stop rule: arm '{arm}' has P(best) {stop['p_best']:.3f} >= "
            f"{stop['threshold']:g} after {stop['outcomes']} outcomes"
        )
        try:
            if arm == self.primary:
                result = {"moved": False, "reason": f"'{arm}' already is the primary alias"}
            else:
                info = registry.promote(self.model_name, arm, alias=self.primary, reason=reason, settings=self.settings)
                result = {"moved": True, "version": info.version, "alias": self.primary, "reason": reason}
            log.warning("Promotion after the stop: %s", result)
        except WorkbenchError as exc:
            result = {"moved": False, "error": str(exc)}
            log.error("The winner '%s' could not be promoted: %s", arm, exc)
        self.store.put_state({"winner": {**stop, "promoted": result}})
        self.refresh(force=True)

    # ---- the request path ----------------------------------------------------------------------------------------
    def route(self, entity_id: str | None, request_id: str, available=None) -> str:
        """The arm of one row (the `Router.route` signature): sticky entity, else a draw from the shares."""
        if entity_id is not None:
            now = self.clock()
            found = self._sticky.get(entity_id)
            if found is None:
                pending = self._new_entities.get(entity_id)
                found = (pending[1], pending[2]) if pending else self.store.sticky(entity_id)
            if found is not None and now - found[1] < self.options.sticky_ttl:
                self._sticky[entity_id] = found
                arm = found[0]
            else:
                arm = self._draw()
                self._sticky[entity_id] = (arm, now)
                self._new_entities[entity_id] = (entity_id, arm, now)
        else:
            arm = self._draw()
        return arm if available is None or arm in available else self.primary

    def _draw(self) -> str:
        i = bisect.bisect_right(self._cumulative, self._rng.random())
        return self.arms[min(i, len(self.arms) - 1)]

    def record(self, work, answers, shadow: str | None) -> None:
        """Queue the arms of answered rows and newly stuck entities; `flush` commits them FLUSH_S later."""
        self.refresh()
        now = time.time()
        rows = [
            Assignment(rid, eid, arm, shadow, now, bool(a.fallback))
            for rid, eid, arm, a in zip(work.request_ids, work.entity_ids, work.variants, answers)
        ]
        entities, self._new_entities = list(self._new_entities.values()), {}
        self._pending.extend(rows)
        self._pending_entities.extend(entities)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
        if len(self._sticky) > 100_000:  # a cache, not the truth (the store is)
            self._sticky.clear()

    def flush(self) -> None:
        """Commit what is queued in one transaction (group commit; on the event loop, no extra thread)."""
        self._flush_scheduled = False
        if not self._pending and not self._pending_entities:
            return
        rows, entities = self._pending, self._pending_entities
        self._pending, self._pending_entities = [], []
        try:
            self.store.record(rows, entities)
        except Exception:  # a full disk or a broken file: logged, and serving goes on
            log.exception("%d answered rows could not be recorded in the outcome store", len(rows))
        now = time.monotonic()
        if now - self._checkpointed > CHECKPOINT_S and not self._checkpointing:
            self._checkpointed, self._checkpointing = now, True
            try:
                asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
            except RuntimeError:  # no running loop (closing): checkpoint here
                self._checkpoint()

    def _checkpoint(self) -> None:
        try:
            self.store.checkpoint()
        except Exception:
            log.exception("The outcome store could not be checkpointed")
        finally:
            self._checkpointing = False

    def _store_outcomes(self, items) -> list[dict]:
        problems = self.store.add_outcomes(items, "feedback", self.kind)
        if any(p["code"] == "UNKNOWN_REQUEST_ID" for p in problems):
            time.sleep(UNKNOWN_RETRY_S)  # another worker may not have committed its latest rows yet
            problems = self.store.add_outcomes(items, "feedback", self.kind)
        return problems

    # ---- /feedback --------------------------------------------------------------------------------------------
    async def feedback(self, body: bytes, content_type: str | None, limits) -> Response:
        items = parse_feedback(body, content_type, limits, self.kind)
        self.flush()  # this worker's answered rows are in the store before their ids are checked
        loop = asyncio.get_running_loop()
        problems = await loop.run_in_executor(None, self._store_outcomes, items)
        if problems:
            raise rejection(problems)
        stop = await loop.run_in_executor(None, self.recompute)
        if stop is not None and self.options.promote_winner:
            await loop.run_in_executor(None, self.promote, stop)
        return Response(dumps({"stored": len(items), "experiment": self.describe()}), 200)

    # ---- /readyz and /metrics ------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        arms = {}
        for i, s in enumerate(self.stats):
            arms[s.arm] = {
                "share": round(float(self.shares[i]), 4) if self.bandit else None,
                "pulls": s.pulls,
                "outcomes": s.n,
                "reward_mean": None if not s.n else round(s.mean, 6),
                "p_best": round(float(self.p_best[i]), 4),
            }
        out: dict[str, Any] = {
            "allocation": self.bandit or "fixed split",
            "reward": self.kind,
            "arms": arms,
            "stopped": bool(self.winner),
        }
        if self.bandit:
            out.update(min_share=self.options.min_share, stop_at=self.options.stop_at)
            out["min_outcomes"] = self.options.min_outcomes
            out["sticky_ttl_s"] = self.options.sticky_ttl
        if self.winner:
            out["winner"] = self.winner
        return out

    def _init_metrics(self, metrics) -> None:
        p, r = "workbench_serving_experiment_", metrics.registry
        self.g_share = Gauge(
            p + "arm_share", "Traffic share of each bandit arm.", ["arm"], registry=r, multiprocess_mode="max"
        )
        self.g_pulls = Gauge(
            p + "arm_pulls", "Requests routed to each arm (all workers).", ["arm"], registry=r, multiprocess_mode="max"
        )
        self.g_outcomes = Gauge(
            p + "arm_outcomes",
            "Outcomes fed back for each arm (all workers).",
            ["arm"],
            registry=r,
            multiprocess_mode="max",
        )
        self.g_mean = Gauge(
            p + "arm_reward_mean", "Mean reward of each arm.", ["arm"], registry=r, multiprocess_mode="max"
        )
        self.g_pbest = Gauge(
            p + "arm_p_best",
            "Posterior probability that each arm is best.",
            ["arm"],
            registry=r,
            multiprocess_mode="max",
        )
        self.g_stopped = Gauge(
            p + "stopped", "1 once the stop rule picked a winner (shares frozen).", registry=r, multiprocess_mode="max"
        )

    def _export(self) -> None:
        for i, s in enumerate(self.stats):
            if self.bandit:
                self.g_share.labels(s.arm).set(float(self.shares[i]))
            self.g_pulls.labels(s.arm).set(s.pulls)
            self.g_outcomes.labels(s.arm).set(s.n)
            if s.n:
                self.g_mean.labels(s.arm).set(s.mean)
            self.g_pbest.labels(s.arm).set(float(self.p_best[i]))
        self.g_stopped.set(1 if self.winner else 0)

    def close(self) -> None:
        """Write what is queued, close the store."""
        self.flush()
        self.store.close()
