"""The users file (`hub_users_file`, default `hub_config/users.yaml`): who is in which group, and
what each group may do on the hub (own server, which services, memory limits).

The group names are the ones the catalog's grants use. The hub applies membership at every login
and auth refresh (see `workbench.hub.auth`), so an edit takes effect within a minute, no restart.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError

__all__ = ["GroupSpec", "UsersFile", "load_users_file", "CachedUsersFile", "REQUIRED_GROUPS", "SERVICES"]

# The groups the workbench's roles and the catalog's grants are written against.
REQUIRED_GROUPS = ("data-scientists", "data-stewards", "stakeholders", "admins")
SERVICES = ("reports", "mlflow")  # services a group may be given access to
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HUB_SIZE_RE = re.compile(r"^\d+(\.\d+)?[KMGT]?$")  # JupyterHub's ByteSpecification: 512M, 4G
SPARK_SIZE_RE = re.compile(r"^\d+[kmgt]?$", re.I)


@dataclass(frozen=True)
class GroupSpec:
    name: str
    description: str = ""
    server: bool = False  # may start their own notebook server
    admin: bool = False  # the hub's admin role (admin panel, any server)
    services: tuple[str, ...] = ()  # hub services the group may open
    memory: str = ""  # server memory limit (Spawner.mem_limit), e.g. 4G
    spark_driver_memory: str = ""  # the Spark driver in the user's kernel, e.g. 2g


@dataclass(frozen=True)
class UsersFile:
    path: Path
    groups: dict[str, GroupSpec]
    users: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def groups_for(self, user: str) -> list[str]:
        """The groups the file declares for `user` (empty for a user it does not name)."""
        return sorted(self.users.get(user, ()))

    def members(self, group: str) -> list[str]:
        return sorted(u for u, groups in self.users.items() if group in groups)

    def limits_for(self, groups) -> dict[str, str]:
        """The largest memory limits among `groups` (names): {'memory': '4G', 'spark_driver_memory': '2g'}."""
        limits: dict[str, str] = {}
        for key in ("memory", "spark_driver_memory"):
            values = [getattr(self.groups[g], key) for g in groups if g in self.groups and getattr(self.groups[g], key)]
            if values:
                limits[key] = max(values, key=_bytes)
        return limits


def load_users_file(path: str | Path) -> UsersFile:
    """Read and check the users file; a ConfigError names the file, the entry and what is expected."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"No users file at {path}. Create it (see hub_config/users.yaml in the workbench) or set WORKBENCH_HUB_USERS_FILE."
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'groups' and 'users', found a {type(raw).__name__}.")
    groups = {name: _group(path, name, spec) for name, spec in (raw.get("groups") or {}).items()}
    missing = [g for g in REQUIRED_GROUPS if g not in groups]
    if missing:
        raise ConfigError(
            f"{path}: groups {', '.join(missing)} are missing. The workbench's roles and the catalog's grants need all of {', '.join(REQUIRED_GROUPS)}."
        )
    users: dict[str, tuple[str, ...]] = {}
    for user, member_of in (raw.get("users") or {}).items():
        user = str(user)
        if not NAME_RE.match(user):
            raise ConfigError(
                f"{path}: user name '{user}' is invalid: expected lowercase letters, digits, '.', '_' or '-'."
            )
        if isinstance(member_of, str):
            member_of = [member_of]
        if not isinstance(member_of, list):
            raise ConfigError(
                f"{path}: user '{user}' must map to a list of groups, found a {type(member_of).__name__}."
            )
        unknown = [g for g in member_of if g not in groups]
        if unknown:
            raise ConfigError(
                f"{path}: user '{user}' is in undeclared group(s) {', '.join(map(str, unknown))}. Declare them under 'groups' or fix the name."
            )
        users[user] = tuple(dict.fromkeys(str(g) for g in member_of))
    return UsersFile(path=path, groups=groups, users=users)


def _group(path: Path, name: str, spec) -> GroupSpec:
    where = f"{path}: group '{name}'"
    if not NAME_RE.match(str(name)):
        raise ConfigError(f"{where}: invalid name; expected lowercase letters, digits, '.', '_' or '-'.")
    spec = spec or {}
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where} must be a mapping (description, server, admin, services, limits), found a {type(spec).__name__}."
        )
    unknown_keys = set(spec) - {"description", "server", "admin", "services", "limits"}
    if unknown_keys:
        raise ConfigError(
            f"{where} has unknown key(s) {', '.join(sorted(unknown_keys))}; known: description, server, admin, services, limits."
        )
    for key in ("server", "admin"):
        if not isinstance(spec.get(key, False), bool):
            raise ConfigError(f"{where}: '{key}' must be true or false.")
    services = tuple(spec.get("services") or ())
    bad = [s for s in services if s not in SERVICES]
    if bad:
        raise ConfigError(
            f"{where}: unknown service(s) {', '.join(map(str, bad))}; expected some of {', '.join(SERVICES)}."
        )
    limits = spec.get("limits") or {}
    if not isinstance(limits, dict) or set(limits) - {"memory", "spark_driver_memory"}:
        raise ConfigError(f"{where}: 'limits' takes 'memory' (e.g. 4G) and 'spark_driver_memory' (e.g. 2g).")
    memory, driver = str(limits.get("memory", "")), str(limits.get("spark_driver_memory", ""))
    if memory and not HUB_SIZE_RE.match(memory):
        raise ConfigError(f"{where}: limits.memory must be a size such as 512M or 4G.")
    if driver and not SPARK_SIZE_RE.match(driver):
        raise ConfigError(f"{where}: limits.spark_driver_memory must be a size such as 512m or 2g.")
    return GroupSpec(
        name=str(name),
        description=str(spec.get("description", "")),
        server=spec.get("server", False),
        admin=spec.get("admin", False),
        services=services,
        memory=memory,
        spark_driver_memory=driver,
    )


def _bytes(size: str) -> float:
    number = re.match(r"^[\d.]+", size).group(0)
    unit = size[len(number) :].upper()
    return float(number) * 1024 ** "BKMGT".index(unit or "B")


class CachedUsersFile:
    """The users file, re-read when it changes on disk (checked on every call: one stat).

    No lock: the hub calls it from its one event-loop thread (and traitlets deep-copies config values)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._value: UsersFile | None = None

    def get(self) -> UsersFile:
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp or self._value is None:
            self._value, self._stamp = load_users_file(self.path), stamp
        return self._value
