"""The lanes: what runs in the batchers' threads (main, fallback, shadow), mixed into `service.Service`.

A lane gets a micro-batch of jobs, builds the raw columns once (`fastpath.RawBatch`), decorates and predicts each
variant's rows on its compiled plan (or the pandas path), retries a failing group row by row (so one bad row never
takes its batch neighbours into the fallback), claims the jobs still waiting, and logs the answered rows - one
prediction-log record per batch, whose number each request keeps (`Work.log_seq`) to await its sync before its
answer goes out (`predlog_durability = "ack"`), while the lane goes on with the next batch.
The shadow lane gets a copy of the answered rows (with the primary's model input when it reads the same) and
never touches the response path.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ServingError
from .batching import Job, Overloaded
from .fastpath import Frame, RawBatch, check_domain, model_input, predict

__all__ = ["Lanes", "Work", "Answer", "log_fixed", "input_key"]

log = logging.getLogger("workbench.serving")


@dataclass
class Work:
    """The validated rows of one request (or of the rows of it a lane must answer)."""

    rows: list[dict]
    request_ids: list[str]
    entity_ids: list[str | None]
    variants: list[str]
    arrival: float  # epoch seconds
    t0: float  # perf_counter at arrival
    reasons: list[str] | None = None  # fallback lane: why each row falls back
    primary: np.ndarray | None = None  # shadow lane: what the primary answered
    X: Frame | None = None  # shadow lane: the primary's model input, when the shadow reads the same
    decorated: tuple | None = None  # shadow lane: the input key `X` was built for
    raw: RawBatch | None = None  # shadow lane: the raw rows
    arrivals: list[float] | None = None  # shadow lane: per row
    t0s: list[float] | None = None
    log_seq: int = 0  # the prediction-log record of its answered rows: the answers wait until it is durable


@dataclass
class Answer:
    prediction: float
    label: int | None
    version: str
    variant: str
    fallback: bool = False
    reason: str | None = None
    out_of_domain: list[str] = field(default_factory=list)
    needs_fallback: str | None = None  # set by a lane that could not answer the row


def input_key(model) -> tuple:
    """Models with equal keys get the same input from the same raw rows."""
    return ("X", model.spec.feature_function, model.spec.numeric, model.spec.categorical)


def log_fixed(rids, eids, arrivals, answers, latencies, shadow: bool) -> dict:
    """The fixed prediction-log columns of some answered rows (timestamp: epoch seconds)."""
    return {
        "request_id": list(rids),
        "entity_id": list(eids),
        "timestamp": list(arrivals),
        "model_version": [a.version for a in answers],
        "variant": [a.variant for a in answers],
        "shadow": [shadow] * len(answers),
        "prediction": [a.prediction for a in answers],
        "latency_ms": list(latencies),
        "fallback": [a.fallback for a in answers],
        "fallback_reason": [a.reason for a in answers],
        "out_of_domain": [a.out_of_domain for a in answers],
    }


def _feature_columns(features: list, rows_idx: list[int]) -> tuple[dict, dict]:
    """The model-input columns of the answered rows (`features[i]` = (Frame, k) or None), stacked."""
    by_frame: dict[int, tuple[Frame, list[int], list[int]]] = {}
    for pos, i in enumerate(rows_idx):
        ref = features[i]
        if ref is None:
            continue
        X, k = ref
        entry = by_frame.setdefault(id(X), (X, [], []))
        entry[1].append(k)
        entry[2].append(pos)
    if not by_frame:
        return {}, {}
    n = len(rows_idx)
    if len(by_frame) == 1:
        X, ks, positions = next(iter(by_frame.values()))
        if len(positions) == n:
            part = X if ks == list(range(X.n)) else X.take(ks)
            return part.cols, part.types
    types: dict[str, str] = {}
    for X, _, _ in by_frame.values():
        types.update(X.types)
    cols = {c: np.full(n, np.nan) if t == "double" else np.full(n, None, dtype=object) for c, t in types.items()}
    for X, ks, positions in by_frame.values():
        idx = np.asarray(ks)
        pos = np.asarray(positions)
        for c, a in X.cols.items():
            cols[c][pos] = a[idx]
    return cols, types


class Lanes:
    """Batch functions of `Service` (they read its variants, models, breakers, metrics and log)."""

    def _raw_batch(self, rows: list[dict]) -> RawBatch:
        contract = self.contract
        cols = list(contract.columns) if contract is not None else []
        if rows and len(rows[0]) != len(cols):
            cols = list(dict.fromkeys([*cols, *rows[0]]))
        return RawBatch.of(rows, cols)

    # ---- main ------------------------------------------------------------------------------------------------
    def _run_main(self, jobs: list[Job]) -> list:
        rows, owner, variants = [], [], []
        for j, job in enumerate(jobs):
            w = job.payload
            rows.extend(w.rows)
            owner.extend([j] * len(w.rows))
            variants.extend(w.variants)
        raw = self._raw_batch(rows)
        answers: list = [None] * len(rows)
        features: list = [None] * len(rows)
        decorated: dict = {}
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(variants):
            groups.setdefault(name, []).append(i)
        outcome: dict[str, bool] = {}
        for name, idx in groups.items():
            variant = self.variants.get(name) or self.variants[self.options.alias]
            model = variant.model
            if model is None:
                for i in idx:
                    answers[i] = Answer(math.nan, None, "", name, needs_fallback="not_loaded")
                continue
            if not variant.breaker.allow():
                for i in idx:
                    answers[i] = Answer(math.nan, None, str(model.version), name, needs_fallback="circuit_open")
                continue
            scores, X, ok = self._score(model, raw, idx, decorated)
            outcome[name] = bool(ok.all())
            labels = model.labels(scores)
            ood = check_domain(model.domain, X) if X is not None else [[] for _ in idx]
            version = str(model.version)
            for k, i in enumerate(idx):
                if ok[k]:
                    answers[i] = Answer(
                        float(scores[k]),
                        int(labels[k]) if labels is not None else None,
                        version,
                        name,
                        out_of_domain=ood[k],
                    )
                else:
                    answers[i] = Answer(math.nan, None, version, name, needs_fallback="error")
            if X is not None:
                for k, i in enumerate(idx):
                    features[i] = (X, k)
        # claim the jobs whose requests are still waiting; a job claimed elsewhere timed out
        timed_out: set[str] = set()
        results: list = []
        answered_rows: list[int] = []
        start = 0
        for job in jobs:
            n = len(job.payload.rows)
            if job.claim():
                results.append(answers[start : start + n])
                answered_rows.extend(i for i in range(start, start + n) if not answers[i].needs_fallback)
            else:
                results.append(None)
                timed_out.update(job.payload.variants)
            start += n
        for name, ok in outcome.items():
            variant = self.variants.get(name) or self.variants[self.options.alias]
            success = ok and name not in timed_out
            variant.breaker.record(success)
            self.metrics.circuit_open.labels(name).set(1 if variant.breaker.is_open else 0)
            if not ok:
                self.metrics.model_errors.labels(name).inc()
        self._record_and_log(jobs, owner, answers, features, answered_rows, shadow=False)
        if self.shadow is not None and self.shadow.model is not None and answered_rows:
            self._to_shadow(jobs, owner, answers, raw, decorated, answered_rows)
        return results

    # ---- fallback ----------------------------------------------------------------------------------------------
    def _run_fallback(self, jobs: list[Job]) -> list:
        model = self.fallback_model
        rows, owner = [], []
        for j, job in enumerate(jobs):
            rows.extend(job.payload.rows)
            owner.extend([j] * len(job.payload.rows))
        idx = list(range(len(rows)))
        raw = self._raw_batch(rows)
        reasons = [r for job in jobs for r in job.payload.reasons]
        variants = [v for job in jobs for v in job.payload.variants]
        scores, X, ok = self._score(model, raw, idx, {})
        self.fallback_breaker.record(bool(ok.all()))
        labels = model.labels(scores)
        ood = check_domain(model.domain, X) if X is not None else [[] for _ in idx]
        answers = [
            Answer(
                float(scores[k]),
                int(labels[k]) if labels is not None else None,
                str(model.version),
                variants[k],
                True,
                reasons[k],
                ood[k],
            )
            if ok[k]
            else Answer(math.nan, None, str(model.version), variants[k], needs_fallback=reasons[k])
            for k in idx
        ]
        features = [(X, k) if X is not None else None for k in idx]
        results, answered, start = [], [], 0
        for job in jobs:
            n = len(job.payload.rows)
            if job.claim():
                results.append(answers[start : start + n])
                answered.extend(i for i in range(start, start + n) if not answers[i].needs_fallback)
            else:
                results.append(None)
            start += n
        self._record_and_log(jobs, owner, answers, features, answered, shadow=False)
        return results

    # ---- shadow --------------------------------------------------------------------------------------------------
    def _run_shadow(self, jobs: list[Job]) -> list[None]:
        variant = self.shadow
        model = variant.model if variant is not None else None
        if model is None:
            return [None] * len(jobs)
        works = [job.payload for job in jobs]
        xkey = input_key(model)
        try:
            if all(w.X is not None and w.decorated == xkey for w in works):
                X = Frame.concat([w.X for w in works])
            else:
                X = model_input(model, RawBatch.concat([w.raw for w in works]), {})
            scores = predict(model, X)
            if not np.all(np.isfinite(scores)):
                raise ServingError("non-finite shadow predictions")
        except Exception as exc:
            n = sum(len(w.request_ids) for w in works)
            self.metrics.shadow_failures.inc(n)
            variant.breaker.record(False)
            log.debug("Shadow '%s' failed on %d row(s): %s", variant.name, n, exc.__class__.__name__)
            return [None] * len(jobs)
        variant.breaker.record(True)
        primary = np.concatenate([w.primary for w in works])
        if model.is_classifier:
            disagree = (scores >= model.spec.decision_threshold) != (primary >= model.spec.decision_threshold)
        else:
            disagree = np.abs(scores - primary) > self.options.shadow_threshold * np.maximum(np.abs(primary), 1e-12)
        self.metrics.shadow(len(scores), int(disagree.sum()))
        if self.predlog is not None:
            labels = model.labels(scores)
            ood = check_domain(model.domain, X)
            version = str(model.version)
            answers = [
                Answer(
                    float(scores[k]),
                    int(labels[k]) if labels is not None else None,
                    version,
                    variant.name,
                    out_of_domain=ood[k],
                )
                for k in range(len(scores))
            ]
            now = time.perf_counter()
            fixed = log_fixed(
                [r for w in works for r in w.request_ids],
                [e for w in works for e in w.entity_ids],
                [a for w in works for a in w.arrivals],
                answers,
                [(now - t0) * 1000.0 for w in works for t0 in w.t0s],
                shadow=True,
            )
            try:
                self.predlog.append_columns(fixed, X.cols, X.types, len(answers), block=False)  # never waits
            except ServingError:
                pass
        return [None] * len(jobs)

    # ---- shared ------------------------------------------------------------------------------------------------
    def _score(self, model, raw: RawBatch, idx: list[int], decorated: dict):
        """(scores, X, ok) for the rows `idx` of `raw`; a failing group is retried row by row."""
        xkey = input_key(model)
        try:
            if xkey not in decorated:  # decorated rows and model input, shared by variants alike
                decorated[xkey] = model_input(model, raw, decorated)
            X_all = decorated[xkey]
            X = X_all if len(idx) == X_all.n else X_all.take(idx)
            scores = predict(model, X)
            ok = np.isfinite(scores)
            if ok.all() or len(idx) == 1:
                return scores, X, ok
        except Exception as exc:
            if len(idx) == 1:
                log.debug("Model %s failed on one row: %s", model.label, exc.__class__.__name__)
                return np.full(1, math.nan), None, np.zeros(1, dtype=bool)
        scores = np.full(len(idx), math.nan)
        ok = np.zeros(len(idx), dtype=bool)
        parts: list[Frame | None] = [None] * len(idx)
        for k, i in enumerate(idx):
            try:
                x1 = model_input(model, raw.take([i]), {})
                s = predict(model, x1)
            except Exception:
                continue
            if np.isfinite(s[0]):
                scores[k], ok[k] = s[0], True
            parts[k] = x1
        got = [p for p in parts if p is not None]
        X = Frame.concat([p if p is not None else Frame.blank(got[0], 1) for p in parts]) if got else None
        return scores, X, ok

    def _record_and_log(self, jobs, owner, answers, features, rows_idx, shadow: bool) -> None:
        if not rows_idx:
            return
        now = time.perf_counter()
        works = [job.payload for job in jobs]
        offsets, start = [], 0
        for w in works:
            offsets.append(start)
            start += len(w.rows)
        rids, eids, arrivals, lat, picked = [], [], [], [], []
        for i in rows_idx:
            w = works[owner[i]]
            k = i - offsets[owner[i]]
            rids.append(w.request_ids[k])
            eids.append(w.entity_ids[k])
            arrivals.append(w.arrival)
            ms = (now - w.t0) * 1000.0
            lat.append(ms)
            a = answers[i]
            picked.append(a)
            self.metrics.predictions.labels(a.variant, a.version).inc()
            self.metrics.prediction_latency.labels(a.variant).observe(ms / 1000.0)
            if a.fallback:
                self.metrics.fallbacks.labels(a.variant, a.reason or "error").inc()
            if a.out_of_domain:
                self.metrics.out_of_domain.labels(a.variant).inc()
        if self.predlog is None:
            return
        cols, types = _feature_columns(features, rows_idx)
        fixed = log_fixed(rids, eids, arrivals, picked, lat, shadow=shadow)
        # may block (predlog_on_full=block); the record is written, and synced by the log's syncer while this
        # lane computes its next batch: each request awaits its record's sync before its answer goes out
        _, seq = self.predlog.append_columns(fixed, cols, types, len(rows_idx))
        for j in {owner[i] for i in rows_idx}:
            works[j].log_seq = max(works[j].log_seq, seq)
        self.metrics.sync_predlog(self.predlog)  # once per batch, in the lane's thread (not per request on the loop)

    def _to_shadow(self, jobs, owner, answers, raw: RawBatch, decorated: dict, answered_rows) -> None:
        """Queue the answered rows for the shadow (off the response path; dropped, and counted, if it lags)."""
        idx = answered_rows
        works = [job.payload for job in jobs]
        offsets, start = [], 0
        for w in works:
            offsets.append(start)
            start += len(w.rows)
        pos = [(works[owner[i]], i - offsets[owner[i]]) for i in idx]
        xkey = input_key(self.shadow.model)
        reuse = decorated.get(xkey)
        sub = Work(
            rows=[],
            request_ids=[w.request_ids[k] for w, k in pos],
            entity_ids=[w.entity_ids[k] for w, k in pos],
            variants=[answers[i].variant for i in idx],
            arrival=0.0,
            t0=0.0,
            primary=np.array([answers[i].prediction for i in idx]),
            X=reuse.take(idx) if reuse is not None else None,
            raw=raw.take(idx),
            arrivals=[w.arrival for w, _ in pos],
            t0s=[w.t0 for w, _ in pos],
        )
        sub.decorated = xkey if reuse is not None else None
        job = Job(len(idx), sub)
        self._loop.call_soon_threadsafe(self._shadow_submit, job)

    def _shadow_submit(self, job: Job) -> None:
        try:
            if not self.shadow_lane.submit(job):
                self.metrics.shadow_dropped.inc(job.rows)
        except Overloaded:
            self.metrics.shadow_dropped.inc(job.rows)
