"""Who is asking: the identity every data read and Spark session is attributed to.

- `production`: the governance service says, from the peer credentials (SO_PEERCRED) of this
  process's connection to its Unix socket: the OS account this process runs as (under the
  production spawner each server runs as its own system user), with the groups the users file
  (owned by root, read by the service) gives that account. Nothing in this process (environment
  variables, module attributes, caches) changes it; no service, no identity (an error, never a
  fallback).
- `local`: today's behaviour: inside a hub-spawned server the hub's `GET /user` for the server's
  token, else a name and groups from settings, both reported as `local-unverified`; for scheduled
  jobs the service identity (`WORKBENCH_JOB_IDENTITY=service`, reported as `service` as before).
  All of it can be set by the user: nothing in the local profile is verified (see
  docs/threat-model.md).

`identity_for_uid` is the service's side: the identity of a peer uid.
"""

from __future__ import annotations

import getpass
import json
import os
import pwd
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from .config import Settings, load_settings
from .errors import IdentityError

__all__ = ["Identity", "current_identity", "identity_for_uid"]

SOURCE_OS = "os-account"  # verified: the peer uid of the governance socket, groups from the users file
SOURCE_SERVICE = "service"  # verified: the service account itself (the scheduler, publish)
SOURCE_LOCAL = "local-unverified"
VERIFIED_SOURCES = (SOURCE_OS, SOURCE_SERVICE)

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
        return self.source in VERIFIED_SOURCES


def current_identity(settings: Settings | None = None) -> Identity:
    settings = settings or load_settings()
    if settings.profile == "production":
        from .governance_client import require_service

        answer = require_service(settings).whoami()
        return Identity(str(answer["user"]), tuple(answer["groups"]), str(answer["source"]))
    return claimed_identity(settings)


def claimed_identity(settings: Settings) -> Identity:
    """What this process says it is (local profile): never verified."""
    api_url, token = os.environ.get("JUPYTERHUB_API_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
    if api_url and token:
        model = _hub_model(api_url, token)
        if model.get("kind") == "service":  # a hub service (the scheduler)
            return Identity(settings.service_user, settings.service_groups, SOURCE_SERVICE)
        return Identity(str(model["name"]), tuple(sorted(model.get("groups") or ())), SOURCE_LOCAL)
    if os.environ.get("WORKBENCH_JOB_IDENTITY") == "service":  # a scheduled job; in production the OS account says
        return Identity(settings.service_user, settings.service_groups, SOURCE_SERVICE)
    return Identity(settings.user or _os_user(), settings.groups, SOURCE_LOCAL)


def identity_for_uid(uid: int, settings: Settings, users) -> Identity:
    """The governance service's answer for a peer uid: its own account is the service identity; any other
    account is its OS name with the groups `users` (a UsersFile) declares for it."""
    if uid == os.geteuid():
        return Identity(settings.service_user, tuple(settings.service_groups), SOURCE_SERVICE)
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return Identity(f"uid{uid}", (), SOURCE_OS)  # no account name: no groups
    return Identity(name, tuple(users.groups_for(name)), SOURCE_OS)


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
