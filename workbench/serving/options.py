"""`ServeOptions`: everything `workbench serve` decides, from settings plus command-line flags (and back to JSON
for worker processes)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .. import registry
from ..config import Settings
from ..errors import ServingError
from .protocol import Limits
from .routing import parse_fallback

__all__ = ["ServeOptions"]


# ---- options -----------------------------------------------------------------------------------------------
@dataclass
class ServeOptions:
    """Everything `workbench serve` decides, from settings plus command-line flags."""

    model_name: str
    alias: str = registry.CHAMPION
    shadow: str | None = None
    split: dict[str, float] = field(default_factory=dict)
    fallback: str = "previous"
    timeout: float = 0.5  # seconds per request
    batch_max_rows: int = 64
    batch_wait: float = 0.005  # seconds
    max_pending_rows: int = 4096
    max_body_bytes: int = 1 << 20
    max_rows: int = 1000
    max_string_chars: int = 256
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0  # seconds
    reload_interval: float = 10.0  # seconds; 0 disables hot reload
    shadow_threshold: float = 0.1
    log_predictions: bool = True
    shadow_batch_rows: int = 256
    shadow_batch_wait: float = 0.02
    # experiments (`experiment.py`): /feedback for every served variant, and bandit allocation between arms
    feedback: bool = False  # record each answered request's arm and accept POST /feedback (implied by bandit)
    bandit: str | None = None  # "thompson" | "epsilon-greedy"
    arms: list[str] = field(default_factory=list)  # the aliases the bandit allocates between (primary included)
    min_share: float = 0.05  # the least share of traffic any arm keeps
    epsilon: float = 0.1  # epsilon-greedy: the share spread evenly
    reward: str = "binary"  # "binary" (0/1, Beta posteriors) | "numeric" (Gaussian approximation)
    stop_at: float = 0.95  # P(best) at which an arm wins (0 never stops)
    min_outcomes: int = 200  # outcomes needed before the stop rule may fire
    promote_winner: bool = False  # move the primary alias to the winner through the registry
    sticky_ttl: float = 86400.0  # seconds an entity keeps its arm
    refresh_interval: float = 0.5  # seconds between re-reads of the shared allocation state

    @classmethod
    def from_settings(cls, settings: Settings, model_name: str | None = None, **overrides: Any) -> ServeOptions:
        values = dict(
            model_name=model_name or settings.model_name,
            fallback=settings.serving_fallback,
            timeout=settings.serving_timeout_ms / 1000.0,
            batch_max_rows=settings.serving_batch_max_rows,
            batch_wait=settings.serving_batch_wait_ms / 1000.0,
            max_pending_rows=settings.serving_max_pending_rows,
            max_body_bytes=settings.serving_max_body_bytes,
            max_rows=settings.serving_max_rows,
            max_string_chars=settings.serving_max_string_chars,
            breaker_failures=settings.serving_breaker_failures,
            breaker_cooldown=settings.serving_breaker_cooldown_ms / 1000.0,
            reload_interval=settings.serving_reload_interval_ms / 1000.0,
            shadow_threshold=float(settings.serving_shadow_disagreement),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        parse_fallback(self.fallback)
        names = [self.alias, *self.split]
        if len(set(names)) != len(names):
            raise ServingError(
                f"--split names the primary alias '{self.alias}' (or one alias twice); each variant must be another alias."
            )
        if self.shadow and self.shadow in names:
            raise ServingError(
                f"The shadow '{self.shadow}' is also a served variant; choose another alias for --shadow."
            )
        if sum(self.split.values()) > 100:
            raise ServingError("The --split percentages add up to more than 100.")
        self._check_experiment()

    def _check_experiment(self) -> None:
        from ..bandit import POLICIES, REWARD_KINDS

        if self.reward not in REWARD_KINDS:
            raise ServingError(f"--reward must be one of {', '.join(REWARD_KINDS)}; found '{self.reward}'.")
        if not self.bandit:
            if self.arms:
                raise ServingError("--arms needs --bandit thompson|epsilon-greedy (or use --split for a fixed split).")
            return
        if self.bandit not in POLICIES[:2]:
            raise ServingError(f"--bandit must be 'thompson' or 'epsilon-greedy'; found '{self.bandit}'.")
        if self.split:
            raise ServingError("--bandit allocates traffic itself: leave out --split (name the variants in --arms).")
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ServingError(f"--arms takes two or more different aliases (e.g. {self.alias},challenger).")
        if self.alias not in self.arms:
            raise ServingError(f"--arms must include the primary alias '{self.alias}' (e.g. {self.alias},challenger).")
        if self.shadow and self.shadow in self.arms:
            raise ServingError(f"The shadow '{self.shadow}' is also an arm; choose another alias for --shadow.")
        if not 0 <= self.min_share <= 1 / len(self.arms):
            raise ServingError(
                f"--min-share must be between 0 and {1 / len(self.arms):g} for {len(self.arms)} arms; "
                f"found {self.min_share:g}."
            )
        if not 0 <= self.epsilon <= 1 or not 0 <= self.stop_at <= 1 or self.min_outcomes < 0:
            raise ServingError("--epsilon and --stop-at take a number in [0, 1]; --min-outcomes a count >= 0.")
        if self.sticky_ttl <= 0 or self.refresh_interval < 0:
            raise ServingError("--sticky-ttl takes a number of seconds > 0.")

    @property
    def experiment(self) -> bool:
        """Whether the service records arms and accepts /feedback."""
        return bool(self.feedback or self.bandit)

    @property
    def limits(self) -> Limits:
        return Limits(self.max_body_bytes, self.max_rows, self.max_string_chars)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
