"""Routing: which variant answers a row (a stable hash of the entity), the circuit breaker that keeps a failing
variant out, and the fallback chain's parsing (`previous`, `constant:VALUE`, `none`).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ServingError

__all__ = ["Router", "CircuitBreaker", "FallbackStep", "parse_fallback", "parse_split"]


# ---- routing -------------------------------------------------------------------------------------------
def parse_split(items) -> dict[str, float]:
    """['challenger=10', ...] -> {'challenger': 10.0}; percentages of traffic, summing to at most 100."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, pct = str(item).partition("=")
        try:
            value = float(pct)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or not 0 < value <= 100:
            raise ServingError(
                f"--split takes ALIAS=PERCENT with 0 < PERCENT <= 100 (e.g. challenger=10); found '{item}'."
            )
        out[name.strip()] = value
    if sum(out.values()) > 100:
        raise ServingError(f"The --split percentages add up to {sum(out.values()):g}, more than 100.")
    return out


class Router:
    """Variant by a stable hash of the entity: bucket = hash(salt, entity) in [0, 100).

    Splits take consecutive bucket ranges in the order given; the primary takes the rest. Raising a
    variant's percentage only moves entities from the primary into it (the salt is the model name, not
    the split), so a canary can be widened without reshuffling who saw what."""

    def __init__(self, primary: str, splits: dict[str, float], salt: str):
        self.primary = primary
        self.salt = salt.encode()
        self.ranges: list[tuple[float, str]] = []
        upper = 0.0
        for name, pct in splits.items():
            upper += pct
            self.ranges.append((upper, name))

    def bucket(self, key: str) -> float:
        digest = hashlib.blake2b(key.encode(), digest_size=8, key=self.salt[:64]).digest()
        return int.from_bytes(digest, "big") / 2.0**64 * 100.0

    def route(self, entity_id: str | None, request_id: str, available=None) -> str:
        if not self.ranges:
            return self.primary
        b = self.bucket(entity_id if entity_id is not None else request_id)
        for upper, name in self.ranges:
            if b < upper:
                return name if available is None or name in available else self.primary
        return self.primary


# ---- circuit breaker and fallback --------------------------------------------------------------------
class CircuitBreaker:
    """Closed -> open after `failures` consecutive failures -> half-open after `cooldown` seconds (one
    trial batch) -> closed on success, open again on failure. Thread-safe."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failures: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.failures = max(1, int(failures))
        self.cooldown = float(cooldown)
        self.clock = clock
        self.state = self.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self._trial = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self.state == self.OPEN and self.clock() - self.opened_at >= self.cooldown:
                self.state, self._trial = self.HALF_OPEN, False
            if self.state == self.CLOSED:
                return True
            if self.state == self.HALF_OPEN and not self._trial:
                self._trial = True
                return True
            return False

    def record(self, success: bool) -> None:
        with self._lock:
            if success:
                self.state, self.consecutive, self._trial = self.CLOSED, 0, False
                return
            self.consecutive += 1
            if self.state == self.HALF_OPEN or self.consecutive >= self.failures:
                self.state, self.opened_at, self._trial = self.OPEN, self.clock(), False

    @property
    def is_open(self) -> bool:
        return self.state == self.OPEN


@dataclass(frozen=True)
class FallbackStep:
    kind: str  # "previous" | "constant"
    value: float = 0.0


def parse_fallback(text: str) -> tuple[FallbackStep, ...]:
    """'previous', 'constant:0.2', 'none', or a chain 'previous,constant:0.2' (tried in order)."""
    steps = []
    for part in [p.strip() for p in str(text or "").split(",") if p.strip()]:
        if part == "none":
            continue
        if part == "previous":
            steps.append(FallbackStep("previous"))
            continue
        kind, _, value = part.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if kind != "constant" or not math.isfinite(number):
            raise ServingError(
                f"serving_fallback takes 'previous', 'constant:NUMBER', 'none' or a comma-separated chain; found '{part}'."
            )
        steps.append(FallbackStep("constant", number))
    return tuple(steps)
