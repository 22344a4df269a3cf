"""The service: one served model name - its variants, lanes, prediction log, metrics and hot reload.

`Service.invoke(endpoint, body, content_type)` returns a plain `Response(body, status, content_type)`;
`workbench.serving.app` only adapts it to HTTP (as MLflow's scoring server does), so everything here is
testable without a server. One request goes through:

1. **parse** (`protocol.parse_payload`): content type, size, JSON (orjson).
2. **validate** (`contract.RequestContract`) on the parsed JSON: nothing invalid reaches a model.
3. **route** (`routing.Router`): a stable hash of `entity_id` picks the variant (A/B or canary split). The
   shadow gets a copy of every answered row, off the response path.
4. **predict** through the main lane's micro-batcher (`lanes.py`, `batching.py`) within the request's time
   budget, on each version's compiled plan when it has one (`fastpath.py`), else the pandas path. A model that
   raises, returns non-finite values or misses the budget is answered by the fallback chain (previous
   champion, then a constant) marked `fallback: true`; repeated failures open the variant's circuit breaker.
5. **log** every answered row to the prediction log (`predlog.py`) *before* the response is released: with
   `predlog_durability = "ack"` the request awaits the sync of its batch's write-ahead record.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import registry
from ..config import Settings
from ..errors import RequestRejected, WorkbenchError
from .batching import Job, MicroBatcher, Overloaded
from .contract import RequestContract
from .lanes import Answer, Lanes, Work, log_fixed
from .metrics import Metrics
from .model import LoadedModel, Lookups, load_version
from .options import ServeOptions
from .predlog import FULL, LogFull, PredictionLog
from .protocol import (
    ENDPOINT_INVOCATIONS,
    ID_RE,
    Response,
    dumps,
    error_body,
    error_response,
    parse_payload,
    too_large,
)
from .routing import CircuitBreaker, Router, parse_fallback

__all__ = ["Service", "Variant", "Work", "Answer", "TIMEOUT"]

log = logging.getLogger("workbench.serving")


@dataclass
class Variant:
    name: str  # the alias it serves
    role: str  # "primary" | "split" | "shadow"
    breaker: CircuitBreaker
    model: LoadedModel | None = None
    percent: float = 0.0
    error: str = ""  # why it is not loaded


TIMEOUT = object()


class Service(Lanes):
    """One served model name: its variants, batchers, prediction log, metrics and hot reload.

    Dependencies are injected: `lookups` (feature-function lookup tables), `predlog` (or None to log
    nothing), `metrics`, `clock`. Use it from one event loop: `await start()`, `await invoke(...)`,
    `await close()`."""

    def __init__(
        self,
        settings: Settings,
        options: ServeOptions,
        lookups: Lookups | None = None,
        predlog: PredictionLog | None | str = "settings",
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        options.check()
        self.settings = settings
        self.options = options
        self.lookups = lookups or Lookups(settings)
        self.metrics = metrics or Metrics()
        if predlog == "settings":
            predlog = PredictionLog.from_settings(settings, options.model_name) if options.log_predictions else None
        self.predlog: PredictionLog | None = predlog
        self.fallback_steps = parse_fallback(options.fallback)
        self.variants: dict[str, Variant] = {options.alias: Variant(options.alias, "primary", self._breaker(clock))}
        for name, pct in options.split.items():
            self.variants[name] = Variant(name, "split", self._breaker(clock), percent=pct)
        self.shadow = Variant(options.shadow, "shadow", self._breaker(clock)) if options.shadow else None
        self.fallback_model: LoadedModel | None = None
        self.fallback_breaker = self._breaker(clock)
        self.router = Router(options.alias, options.split, salt=options.model_name)
        self.experiment = None  # experiment.Experiment: /feedback, and with --bandit the router (a routing hook)
        if options.experiment:
            from .experiment import Experiment

            self.experiment = Experiment(settings, options, self.metrics)
            for name in self.experiment.arms:
                self.variants.setdefault(name, Variant(name, "arm", self._breaker(clock)))
            if options.bandit:
                self.router = self.experiment
        self.contract: RequestContract | None = None
        self.ready = False
        self.not_ready_reason = "the model is loading"
        self.started_at = time.time()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._swap_lock = threading.Lock()
        self.main = MicroBatcher(
            "main",
            self._run_main,
            options.batch_max_rows,
            options.batch_wait,
            options.max_pending_rows,
            on_batch=lambda j, r: self.metrics.batch_rows.labels("main").observe(r),
        )
        self.fallback_lane = MicroBatcher(
            "fallback",
            self._run_fallback,
            options.batch_max_rows,
            options.batch_wait,
            options.max_pending_rows,
            on_batch=lambda j, r: self.metrics.batch_rows.labels("fallback").observe(r),
        )
        self.shadow_lane = MicroBatcher(
            "shadow",
            self._run_shadow,
            options.shadow_batch_rows,
            options.shadow_batch_wait,
            options.max_pending_rows,
            drop_when_full=True,
            on_batch=lambda j, r: self.metrics.batch_rows.labels("shadow").observe(r),
        )
        self.watcher = None
        self._request_metrics: dict[tuple[str, int], tuple] = {}

    def _breaker(self, clock) -> CircuitBreaker:
        return CircuitBreaker(self.options.breaker_failures, self.options.breaker_cooldown, clock)

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self, load: bool = True, background: bool = True) -> Service:
        """Start the batchers and the log; load the models (in a thread, so /healthz answers meanwhile)."""
        self._loop = asyncio.get_running_loop()
        self.main.start()
        self.fallback_lane.start()
        self.shadow_lane.start()
        if self.predlog is not None:
            self.predlog.start()
        if load:
            task = self._loop.run_in_executor(None, self._load_all)
            if not background:
                await task
        return self

    async def close(self) -> None:
        """Graceful: stop reloading, answer what is pending, let the shadow finish, flush the log."""
        self.ready = False
        self.not_ready_reason = "the service is shutting down"
        if self.watcher is not None:
            self.watcher.stop()
        await self.main.close()
        await self.fallback_lane.close()
        await self.shadow_lane.close()
        if self.predlog is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.predlog.close)
            self.metrics.sync_predlog(self.predlog)
        if self.experiment is not None:
            self.experiment.close()

    def _load_all(self) -> None:
        """Load every variant (the primary is required for readiness), the shadow and the fallback model."""
        from .reload import AliasWatcher

        cache: dict[int, LoadedModel] = {}
        for variant in [*self.variants.values(), *([self.shadow] if self.shadow else [])]:
            try:
                version = registry.get_version(self.options.model_name, variant.name, self.settings).version
                model = cache.get(version) or load_version(
                    self.settings, self.options.model_name, version, self.lookups
                )
                model.ref = variant.name
                cache[version] = model
                self.swap(variant.name, model, initial=True)
            except WorkbenchError as exc:
                variant.error = str(exc)
                log.error("Variant '%s' of model '%s' is not served: %s", variant.name, self.options.model_name, exc)
        if (
            any(s.kind == "previous" for s in self.fallback_steps)
            and self.variants[self.options.alias].model is not None
        ):
            self._load_previous(cache)
        if self.options.reload_interval > 0:
            self.watcher = AliasWatcher(self, self.options.reload_interval).start()
        if self.variants[self.options.alias].model is None:
            self.not_ready_reason = (
                f"the '{self.options.alias}' model could not be loaded: {self.variants[self.options.alias].error}"
            )
        else:
            settle_heap()  # before the first request: what is loaded now is never scanned again
            self.ready = True  # only once every variant had its chance: no early traffic all on the primary

    def _load_previous(self, cache: dict[int, LoadedModel]) -> None:
        current = self.variants[self.options.alias].model
        try:
            stack = registry._stack(registry.history(self.options.model_name, self.options.alias, self.settings))
        except WorkbenchError:
            stack = []
        earlier = [v for v in stack if v != current.version]
        if not earlier:
            log.warning(
                "Fallback 'previous': model '%s' has no earlier '%s' in its alias history; no previous model.",
                self.options.model_name,
                self.options.alias,
            )
            return
        version = earlier[-1]
        try:
            self.fallback_model = cache.get(version) or load_version(
                self.settings, self.options.model_name, version, self.lookups
            )
            self.fallback_model.ref = f"previous {self.options.alias}"
        except WorkbenchError as exc:
            log.error("Fallback 'previous' (version %s) could not be loaded: %s", version, exc)

    def swap(self, variant_name: str, model: LoadedModel, initial: bool = False) -> None:
        """Atomically serve `model` for `variant_name` (batches in flight finish on the old one)."""
        with self._swap_lock:
            variant = (
                self.shadow
                if self.shadow is not None and self.shadow.name == variant_name
                else self.variants[variant_name]
            )
            old = variant.model
            variant.model, variant.error = model, ""
            variant.breaker.record(True)
            if variant.role == "primary" and old is not None and old.version != model.version and not initial:
                self.fallback_model = old  # the previous champion answers when the new one fails
                old.ref = f"previous {variant_name}"
            routable = [v.model for v in self.variants.values() if v.model is not None]
            self.contract = RequestContract.for_models(routable, self.options.limits)
            self.metrics.model_version.labels(variant_name).set(model.version)
            if not initial and self.variants[self.options.alias].model is not None:
                self.ready = True
        if not initial:
            settle_heap(release=True)  # the new version's objects frozen too, the replaced ones collectable

    # ---- request path ---------------------------------------------------------------------------------------------
    async def invoke(
        self,
        endpoint: str,
        body: bytes,
        content_type: str | None,
        request_id: str | None = None,
        oversized: bool = False,
    ) -> Response:
        """Answer one request. `oversized`: the adapter stopped reading the body at max_body_bytes."""
        t0 = time.perf_counter()
        arrival = time.time()
        try:
            if oversized:
                raise too_large(self.options.limits)
            if not self.ready:
                raise RequestRejected(
                    "NOT_READY", f"Not ready: {self.not_ready_reason}. Retry when /readyz answers 200."
                )
            fmt, records = parse_payload(body, content_type, self.options.limits)
            base_id = request_id if request_id and ID_RE.fullmatch(request_id) else new_request_id()
            rows, rids, eids, warnings = self.contract.validate(records, base_id)
            available = {n for n, v in self.variants.items() if v.model is not None}
            route = self.router.route
            variants = [route(e, r, available) for e, r in zip(eids, rids)]
            work = Work(rows, rids, eids, variants, arrival, t0)
            answers = await self._answer(work)
            if self.experiment is not None:
                self.experiment.record(work, answers, self.shadow.name if self.shadow else None)
            response = Response(self._format(endpoint, work, answers, warnings), 200)
        except RequestRejected as exc:
            self.metrics.errors.labels(exc.code).inc()
            response = error_response(exc)
        except LogFull as exc:  # predlog_on_full=block and the writer cannot keep up
            self.metrics.errors.labels("OVERLOADED").inc()
            response = Response(error_body("OVERLOADED", f"{exc} The request was not answered; retry later."), 503)
        except Exception:
            log.exception("Unexpected error while answering a request")
            self.metrics.errors.labels("INTERNAL_ERROR").inc()
            response = Response(
                error_body("INTERNAL_ERROR", "An internal error occurred; it is logged on the server."), 500
            )
        self._count(endpoint, response.status, time.perf_counter() - t0)
        return response

    def _count(self, endpoint: str, status: int, seconds: float) -> None:
        """The request counter and latency of one answer (their labelled children looked up once, not per call)."""
        key = (endpoint, status)
        children = self._request_metrics.get(key)
        if children is None:
            children = self._request_metrics[key] = (
                self.metrics.requests.labels(endpoint, str(status)),
                self.metrics.request_latency.labels(endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)

    async def _answer(self, work: Work) -> list[Answer]:
        n = len(work.rows)
        result = await self._submit(self.main, work, self.options.timeout)
        if result is TIMEOUT:
            answers: list[Answer | None] = [None] * n
            reasons = ["timeout"] * n
        else:
            answers = result
            reasons = [a.needs_fallback if a.needs_fallback else None for a in answers]
        need = [i for i in range(n) if answers[i] is None or answers[i].needs_fallback]
        if need:
            await self._fallback(work, answers, need, [reasons[i] or "error" for i in need])
        if self.predlog is not None:
            await self.predlog.durable(work.log_seq)  # acknowledged means logged (predlog_durability = ack)
        return answers

    async def _submit(self, lane: MicroBatcher, work: Work, budget: float):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        job = Job(len(work.rows), work, future)
        try:
            lane.submit(job)
        except Overloaded as exc:
            raise RequestRejected("OVERLOADED", f"{exc} Retry later.") from None
        left = work.t0 + budget - time.perf_counter() if lane is self.main else budget
        timer = loop.call_later(max(0.0, left), _expire, job)
        try:
            return await future
        finally:
            timer.cancel()

    async def _fallback(self, work: Work, answers: list, need: list[int], reasons: list[str]) -> None:
        remaining, why = list(need), dict(zip(need, reasons))
        for step in self.fallback_steps:
            if not remaining:
                break
            if step.kind == "constant":
                primary = self.variants[self.options.alias].model
                label = (
                    int(step.value >= primary.spec.decision_threshold)
                    if primary is not None and primary.is_classifier
                    else None
                )
                for i in remaining:
                    answers[i] = Answer(step.value, label, "constant", work.variants[i], True, why[i])
                await self._log_constant(work, answers, remaining)
                remaining = []
            elif step.kind == "previous":
                model = self.fallback_model
                if model is None or not self.fallback_breaker.allow():
                    continue
                sub = Work(
                    [work.rows[i] for i in remaining],
                    [work.request_ids[i] for i in remaining],
                    [work.entity_ids[i] for i in remaining],
                    [work.variants[i] for i in remaining],
                    work.arrival,
                    work.t0,
                    reasons=[why[i] for i in remaining],
                )
                result = await self._submit(self.fallback_lane, sub, self.options.timeout)
                if result is TIMEOUT:
                    self.fallback_breaker.record(False)
                    continue
                work.log_seq = max(work.log_seq, sub.log_seq)
                still = []
                for i, a in zip(remaining, result):
                    if a.needs_fallback:
                        still.append(i)
                    else:
                        answers[i] = a
                remaining = still
        if remaining:
            raise RequestRejected(
                "MODEL_UNAVAILABLE",
                f"{len(remaining)} row(s) could not be predicted: the model failed "
                "or ran out of time and no fallback could answer. Retry later.",
            )

    async def _log_constant(self, work: Work, answers: list, idx: list[int]) -> None:
        for i in idx:
            self.metrics.fallbacks.labels(work.variants[i], answers[i].reason).inc()
        if self.predlog is None:
            return
        now = time.perf_counter()
        fixed = log_fixed(
            [work.request_ids[i] for i in idx],
            [work.entity_ids[i] for i in idx],
            [work.arrival] * len(idx),
            [answers[i] for i in idx],
            [(now - work.t0) * 1000.0] * len(idx),
            shadow=False,
        )
        try:
            status, seq = self.predlog.append_columns(fixed, {}, {}, len(idx), block=False)
            if status == FULL:
                status, seq = await asyncio.get_running_loop().run_in_executor(
                    None, self.predlog.append_columns, fixed, {}, {}, len(idx)
                )
            work.log_seq = max(work.log_seq, seq)
        except LogFull as exc:
            raise RequestRejected("OVERLOADED", f"{exc} The request was not answered.") from None

    def _format(self, endpoint: str, work: Work, answers: list[Answer], warnings: list[dict]) -> bytes:
        meta = []
        for i, a in enumerate(answers):
            item = {
                "request_id": work.request_ids[i],
                "entity_id": work.entity_ids[i],
                "prediction": a.prediction,
                "model_version": a.version,
                "variant": a.variant,
                "fallback": a.fallback,
                "out_of_domain": a.out_of_domain,
            }
            if a.label is not None:
                item["label"] = a.label
            if a.fallback:
                item["fallback_reason"] = a.reason
            meta.append(item)
        if endpoint == ENDPOINT_INVOCATIONS:
            classifier = any(a.label is not None for a in answers)
            preds = (
                [[1.0 - a.prediction, a.prediction] for a in answers] if classifier else [a.prediction for a in answers]
            )
            payload: dict[str, Any] = {"predictions": preds, "workbench": meta}
        else:
            payload = {"predictions": meta}
        if warnings:
            payload["warnings"] = warnings
        return dumps(payload)

    # ---- other endpoints -----------------------------------------------------------------------------------------
    def health(self) -> Response:
        return Response(dumps({"status": "alive", "uptime_s": round(time.time() - self.started_at, 1)}), 200)

    def readiness(self) -> Response:
        body = {
            "ready": self.ready,
            "model": self.options.model_name,
            "variants": {
                n: {
                    "role": v.role,
                    "version": v.model.version if v.model else None,
                    "percent": v.percent or None,
                    "circuit": v.breaker.state,
                    "path": v.model.path if v.model else None,
                    **({"error": v.error} if v.error else {}),
                }
                for n, v in [*self.variants.items(), *([(self.shadow.name, self.shadow)] if self.shadow else [])]
            },
            "fallback": {
                "steps": [s.kind if s.kind != "constant" else f"constant:{s.value:g}" for s in self.fallback_steps],
                "previous_version": self.fallback_model.version if self.fallback_model else None,
                "previous_path": self.fallback_model.path if self.fallback_model else None,
            },
        }
        if self.experiment is not None:
            self.experiment.refresh()
            body["experiment"] = self.experiment.describe()
        if not self.ready:
            body["reason"] = self.not_ready_reason
        return Response(dumps(body), 200 if self.ready else 503)

    async def feedback(self, body: bytes, content_type: str | None, oversized: bool = False) -> Response:
        """POST /feedback: rewards for answered request ids (see `experiment.py`); 4xx naming each problem."""
        try:
            if oversized:
                raise too_large(self.options.limits)
            if self.experiment is None:
                raise RequestRejected(
                    "FEEDBACK_DISABLED",
                    "This service does not take feedback: start it with --feedback or --bandit.",
                    status=404,
                )
            response = await self.experiment.feedback(body, content_type, self.options.limits)
        except RequestRejected as exc:
            self.metrics.errors.labels(exc.code).inc()
            response = error_response(exc)
        except Exception:
            log.exception("Unexpected error while storing feedback")
            self.metrics.errors.labels("INTERNAL_ERROR").inc()
            response = Response(
                error_body("INTERNAL_ERROR", "An internal error occurred; it is logged on the server."), 500
            )
        self.metrics.requests.labels("feedback", str(response.status)).inc()
        return response

    def metrics_response(self) -> Response:
        self.metrics.sync_predlog(self.predlog)
        if self.experiment is not None:
            self.experiment.refresh()
        body, content_type = self.metrics.render()
        return Response(body, 200, content_type)


def settle_heap(release: bool = False) -> None:
    """Keep the cyclic garbage collector off what is loaded: collect once, then `gc.freeze()` everything alive.

    A serving process holds millions of long-lived objects (pandas, scikit-learn, pyarrow, MLflow, the models and
    their lookup tables), and every request leaves a few more behind long enough to be promoted; so a full
    (generation 2) collection ran every second or two under load and, scanning all of them with the GIL held,
    stopped the event loop and the lanes for 200-350 ms each time: that was the 32-client p99 (measured: gen-2
    pauses of 195-346 ms against a p99 of 292 ms; see docs/reference/benchmarks.md). Frozen objects are never
    scanned, so later collections only look at what requests create. Reference counting still frees frozen
    objects that are not in a cycle. `release=True` (after a hot reload) unfreezes first so that the replaced
    version's cycles can be collected: one full collection per swap, in the reloading thread.
    """
    if release:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def new_request_id() -> str:
    """A request id for a request that brought none: 12 hex digits of the clock in milliseconds, then 64 random bits.

    Time-ordered, so the outcome store's primary-key index (`outcomes.py`) grows at its right edge instead of at a
    random page for every answered row (a random key cost about 10 us of SQLite per row, on the event loop, under
    `--bandit`); the random part keeps ids unguessable (a client cannot reward another's predictions) and unique
    across workers. The random bits come from the OS in blocks of 512 ids (one `getrandom` call each, not one per
    request: it was 5% of the event loop's time under 32 clients); a forked worker starts with a block of its own."""
    return f"{time.time_ns() // 1_000_000:012x}{_random_hex16()}"


_RANDOM_LOCK = threading.Lock()
_random_pool: list[str] = []


def _random_hex16() -> str:
    with _RANDOM_LOCK:
        if not _random_pool:
            block = os.urandom(8 * 512).hex()
            _random_pool.extend(block[i : i + 16] for i in range(0, len(block), 16))
        return _random_pool.pop()


os.register_at_fork(after_in_child=_random_pool.clear)


def _expire(job: Job) -> None:
    if job.claim() and job.future is not None and not job.future.done():
        job.future.set_result(TIMEOUT)
