"""Who is asking: the identity every data read and Spark session is attributed to.

Inside a hub-spawned server the hub says who the user is; in scheduled jobs a service identity
from settings; elsewhere (a laptop) a local identity from settings, marked unverified.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from .config import Settings, load_settings

__all__ = ["Identity", "current_identity"]

SOURCE_HUB = "hub"
SOURCE_SERVICE = "service"
SOURCE_LOCAL = "local-unverified"


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...]
    source: str

    @property
    def verified(self) -> bool:
        return self.source != SOURCE_LOCAL


def current_identity(settings: Settings | None = None) -> Identity:
    settings = settings or load_settings()
    if os.environ.get("WORKBENCH_JOB_IDENTITY") == "service":
        return Identity(settings.service_user, settings.service_groups, SOURCE_SERVICE)
    user = settings.user or _os_user()
    return Identity(user, settings.groups, SOURCE_LOCAL)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the uid
        return f"uid{os.getuid()}"
