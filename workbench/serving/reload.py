"""Hot reload: follow the registry aliases a service serves and swap in new versions atomically.

A background thread polls every alias (primary, splits, shadow) every `interval` seconds. When an alias
points at a new version, the version is loaded and smoke-tested in that thread (`model.load_version`)
while the old one keeps serving; only then is it swapped in (`Service.swap`: one reference assignment,
so a batch in flight finishes on the model it started with). A version that fails to load or fails
its smoke test is never served: the old one stays, the failure is logged and counted
(`workbench_serving_reloads_total{outcome="failed"}`), and that version is not retried until the
alias moves again. When the primary moves, the version it replaces becomes the 'previous' fallback.
"""

from __future__ import annotations

import logging
import threading

from .. import registry
from ..errors import WorkbenchError
from .model import load_version

__all__ = ["AliasWatcher"]

log = logging.getLogger("workbench.serving.reload")


class AliasWatcher:
    def __init__(self, service, interval: float):
        self.service = service
        self.interval = max(0.05, float(interval))
        self.failed: dict[str, int] = {}  # alias -> version that failed (not retried until the alias moves)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0

    def start(self) -> AliasWatcher:
        self._thread = threading.Thread(target=self._run, name="workbench-reload", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # the registry may be briefly unreachable: keep serving, try again
                log.exception("Polling the registry for alias moves failed; serving continues unchanged.")

    def poll(self) -> list[tuple[str, int, str]]:
        """Check every alias once; returns (alias, version, outcome) for each move seen."""
        self.polls += 1
        service = self.service
        name = service.options.model_name
        events = []
        variants = [*service.variants.values(), *([service.shadow] if service.shadow else [])]
        for variant in variants:
            if self._stop.is_set():
                break
            try:
                version = registry.get_version(name, variant.name, service.settings).version
            except WorkbenchError:
                continue  # the alias was removed: keep serving what we have
            current = variant.model.version if variant.model is not None else None
            if version == current or self.failed.get(variant.name) == version:
                continue
            try:
                model = load_version(service.settings, name, version, service.lookups)
                model.ref = variant.name
            except WorkbenchError as exc:
                self.failed[variant.name] = version
                variant.error = f"version {version} was not swapped in: {exc}"
                service.metrics.reloads.labels(variant.name, "failed").inc()
                log.error(
                    "Alias '%s' of '%s' moved to version %s, which is not served (version %s stays): %s",
                    variant.name,
                    name,
                    version,
                    current,
                    exc,
                )
                events.append((variant.name, version, "failed"))
                continue
            service.swap(variant.name, model)
            self.failed.pop(variant.name, None)
            service.metrics.reloads.labels(variant.name, "swapped").inc()
            log.info("Alias '%s' of '%s' now serves version %s (was %s).", variant.name, name, version, current)
            events.append((variant.name, version, "swapped"))
        return events
