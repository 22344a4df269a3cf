"""Who is asking: the identity every data read and Spark session is attributed to.

Inside a hub-spawned server (or a hub service) the hub says who the user is: the server's own
token (`JUPYTERHUB_API_TOKEN`) is sent to the hub's `GET /user`, and the name and groups the hub
returns are used; variables a user can set by hand (`JUPYTERHUB_USER`, `WORKBENCH_USER`,
`WORKBENCH_GROUPS`, `WORKBENCH_JOB_IDENTITY`) are ignored there. A hub service (the scheduler)
gets the service identity from settings, verified by the hub. Outside the hub: the service identity
for scheduled jobs (`WORKBENCH_JOB_IDENTITY=service`), else a local identity from settings, marked
unverified.
"""

from __future__ import annotations

import getpass
import json
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from .config import Settings, load_settings
from .errors import IdentityError

__all__ = ["Identity", "current_identity"]

SOURCE_HUB = "hub"
SOURCE_SERVICE = "service"
SOURCE_LOCAL = "local-unverified"

HUB_TIMEOUT = 10.0  # seconds for the one GET /user per process

_hub_models: dict[tuple[str, str], dict] = {}
_hub_lock = threading.Lock()


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
    api_url, token = os.environ.get("JUPYTERHUB_API_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
    if api_url and token:
        return _from_hub_model(_hub_model(api_url, token), settings)
    if os.environ.get("WORKBENCH_JOB_IDENTITY") == "service":
        return Identity(settings.service_user, settings.service_groups, SOURCE_SERVICE)
    user = settings.user or _os_user()
    return Identity(user, settings.groups, SOURCE_LOCAL)


def _from_hub_model(model: dict, settings: Settings) -> Identity:
    if model.get("kind") == "service":
        return Identity(settings.service_user, settings.service_groups, SOURCE_SERVICE)
    # GET /user always carries name and groups: the hub grants every token the scopes to identify itself.
    return Identity(str(model["name"]), tuple(sorted(model.get("groups") or ())), SOURCE_HUB)


def _hub_model(api_url: str, token: str) -> dict:
    """The hub's model of the token's owner, fetched once per process (per hub URL and token)."""
    key = (api_url, token)
    with _hub_lock:
        if key not in _hub_models:
            _hub_models[key] = _fetch_hub_model(api_url, token)
        return _hub_models[key]


def _fetch_hub_model(api_url: str, token: str) -> dict:
    request = urllib.request.Request(api_url.rstrip("/") + "/user", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=HUB_TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise IdentityError(
            f"The hub refused this server's token (HTTP {exc.code} from {api_url}/user). "
            "Restart your server from the hub's home page."
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise IdentityError(
            f"The hub at {api_url} did not confirm who you are ({exc.__class__.__name__}). "
            "Check that the hub is running, then retry."
        ) from None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the uid
        return f"uid{os.getuid()}"
