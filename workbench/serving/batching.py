"""Micro-batching: concurrent requests gathered into one model call.

One-row predictions cost almost as much as 64-row ones (the ColumnTransformer, the feature function and
LightGBM all have a large fixed cost per call), so throughput comes from predicting many concurrent
requests together. A `MicroBatcher` owns one worker thread; requests `submit` a `Job` and await its
future. While a batch runs in the thread, the next one gathers (continuous batching). When a batch ends,
the batcher expects as many rows as were in flight (the rows it just answered - their clients tend to come
right back - plus those already waiting, at most `max_rows`) and starts the next batch as soon as that many
are pending, or `max_wait` seconds after the previous batch ended or the oldest pending job arrived
(whichever is later). So with 32 busy clients batches stay near 32 rows instead of alternating between two
halves, and a lone client never waits: one row in flight, one row expected.

A job can be claimed once: by the batch that answers it, or by whoever gives up on it first (the
request's time budget running out). `Job.claim()` decides, so a request is answered - and logged -
exactly once. Jobs claimed before their batch starts are skipped (load shedding for free).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import ServingError

__all__ = ["Job", "MicroBatcher", "Overloaded"]

log = logging.getLogger("workbench.serving.batching")

_claim_lock = threading.Lock()


class Overloaded(ServingError):
    """More rows are waiting for a model than `max_pending` allows."""


@dataclass(eq=False)
class Job:
    """One request's rows for one batcher. `payload` is whatever `run_batch` understands."""

    rows: int
    payload: Any
    future: asyncio.Future | None = None
    enqueued: float = 0.0
    claimed: bool = field(default=False)

    def claim(self) -> bool:
        """True for the first caller only (thread-safe)."""
        with _claim_lock:
            if self.claimed:
                return False
            self.claimed = True
            return True


class MicroBatcher:
    """Gathers jobs and runs `run_batch(list[Job]) -> list[result | None]` in one worker thread.

    `run_batch` returns one entry per job (None for a job it did not claim); the batcher resolves the
    futures of the jobs it ran. `drop_when_full=True` (shadow traffic) drops new jobs instead of
    raising `Overloaded` when `max_pending` rows are waiting; `dropped_rows` counts them.
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[Job]], list[Any]],
        max_rows: int = 64,
        max_wait: float = 0.002,
        max_pending: int = 4096,
        drop_when_full: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ):
        self.name = name
        self.run_batch = run_batch
        self.max_rows = max(1, int(max_rows))
        self.max_wait = max(0.0, float(max_wait))
        self.max_pending = max(1, int(max_pending))
        self.drop_when_full = drop_when_full
        self.on_batch = on_batch  # (jobs, rows) of each batch run, for metrics
        self.dropped_rows = 0
        self.batches = 0
        self._pending: deque[Job] = deque()
        self._pending_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._full_waiter: asyncio.Future | None = None  # the consumer waiting for a full batch or its window
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._last_done = 0.0
        self._expected = 1  # rows expected in the next batch (see the module docstring)

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def start(self) -> MicroBatcher:
        """Start the consumer on the running event loop."""
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"workbench-{self.name}")
        self._task = asyncio.get_running_loop().create_task(self._consume(), name=f"batcher-{self.name}")
        return self

    def submit(self, job: Job) -> bool:
        """Queue a job (event-loop thread only). False when dropped; raises Overloaded when refused."""
        if self._closed:
            raise Overloaded(f"The {self.name} batcher is shutting down.")
        if self._pending_rows + job.rows > self.max_pending and self._pending:
            if self.drop_when_full:
                self.dropped_rows += job.rows
                return False
            raise Overloaded(
                f"{self._pending_rows} rows are already waiting for the {self.name} model "
                f"(serving_max_pending_rows is {self.max_pending})."
            )
        job.enqueued = asyncio.get_running_loop().time()
        self._pending.append(job)
        self._pending_rows += job.rows
        self._wakeup.set()
        if self._pending_rows >= self._expected:
            self._full.set()
            waiter = self._full_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        return True

    async def close(self, timeout: float = 30.0) -> None:
        """Stop accepting jobs, finish the pending ones, stop the thread."""
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=False)

    def _take(self) -> list[Job]:
        batch, rows = [], 0
        while self._pending and (not batch or rows + self._pending[0].rows <= self.max_rows):
            job = self._pending.popleft()
            self._pending_rows -= job.rows
            if job.claimed:  # its request already gave up: don't predict for nobody
                continue
            batch.append(job)
            rows += job.rows
        if self._pending_rows < self._expected:
            self._full.clear()
        return batch

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._pending_rows < self._expected and self.max_wait > 0 and not self._closed:
                # the window opens when the oldest job arrived or the last batch ended, whichever is later:
                # clients answered by that batch get a chance to join the next one
                left = max(self._pending[0].enqueued, self._last_done) + self.max_wait - loop.time()
                if left > 0 and not self._full.is_set():
                    # a future and a timer, not asyncio.wait_for (a task per batch, on the event loop)
                    waiter = self._full_waiter = loop.create_future()
                    timer = loop.call_later(left, _resolve, waiter)
                    try:
                        await waiter
                    finally:
                        timer.cancel()
                        self._full_waiter = None
            batch = self._take()
            if not batch:
                continue
            self.batches += 1
            if self.on_batch is not None:
                self.on_batch(len(batch), sum(j.rows for j in batch))
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, batch)
                error = None
            except Exception as exc:  # run_batch must handle model errors; this is a bug guard
                log.exception("The %s batch failed", self.name)
                results, error = [None] * len(batch), exc
            self._last_done = loop.time()
            self._expected = max(1, min(self.max_rows, sum(j.rows for j in batch) + self._pending_rows))
            if self._pending_rows >= self._expected:
                self._full.set()
            else:
                self._full.clear()
            for job, result in zip(batch, results):
                if job.future is None or job.future.done():
                    continue
                if error is not None:  # even a job run_batch claimed: its request must not hang
                    job.claim()
                    job.future.set_exception(error)
                elif result is not None:
                    job.future.set_result(result)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
