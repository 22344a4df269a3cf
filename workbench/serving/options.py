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
