"""apply_config(settings, c): the hub's whole configuration, from workbench settings and the users file.

It only *sets* values on `c` (never appends), so running it twice gives the same config, and it needs
nothing but a traitlets `Config` to be tested. Two profiles, chosen by the `profile` setting:

- `local`: LocalPasswordAuthenticator (own password per person, accounts made by `workbench hub user`), the
  SimpleLocalProcessSpawner with a home folder per user under the hub state folder, SQLite. When the
  hub runs as root, servers run as the unprivileged `hub_server_user` instead (never as root) and the
  hub runs the governance service on a socket in its state folder, so their reads are still recorded.
- `production`: PAM (system users; docs/how-to/hub.md shows GenericOAuthenticator), LocalProcessSpawner
  running each server as its system user, a PostgreSQL hub database (`hub_db_url`), optional TLS,
  and the governance service (`governance_socket`) run as `service_user`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields
from pathlib import Path

from ..config import ENV_PREFIX, Settings
from ..errors import ConfigError
from .accounts import MIN_PASSWORD_LENGTH, password_file
from .notebooks import PreSpawnHooks, ProvideNotebooks
from .users import NAME_RE, CachedUsersFile, UsersFile, load_users_file

__all__ = [
    "apply_config",
    "database_url",
    "server_environment",
    "service_environment",
    "hub_environment",
    "LandingPage",
    "HomePage",
    "Access",
    "NoServerUsers",
    "RefuseServerWithoutRole",
    "ApplyGroupLimits",
]


AUTHENTICATORS = {
    "local": "workbench.hub.auth.LocalUsersFileAuthenticator",
    "production": "workbench.hub.auth.PAMUsersFileAuthenticator",
}
SPAWNERS = {
    "local": "jupyterhub.spawner.SimpleLocalProcessSpawner",
    "production": "jupyterhub.spawner.LocalProcessSpawner",
}
ROOT_LOCAL_SPAWNER = "workbench.hub.spawner.UnprivilegedLocalSpawner"  # local profile, hub as root
# Every user: enough to see who they are. Servers and services come from group roles.
BASE_USER_SCOPES = ["read:users:name!user", "read:users:groups!user", "read:users:activity!user"]
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
GOVERNANCE_SOCKET = "governance.sock"  # in the hub state folder, when the hub provides the service itself
AUTH_REFRESH_SECONDS = 60  # how stale a user's groups may get while they keep working
SPAWN_TIMEOUT_SECONDS = 120  # a loaded 2-core machine starting many servers at once needs more than the default 30-60 s
SERVICE_DESCRIPTIONS = {
    "reports": "Rendered notebook runs and the reports index",
    "mlflow": "MLflow experiments, runs and registered models",
}


def apply_config(settings: Settings, c, *, euid: int | None = None):
    """Set the hub's configuration on `c` (a traitlets Config); returns `c`."""
    users = load_users_file(settings.path("hub_users_file"))
    state = settings.path("hub_state_dir")
    euid = os.geteuid() if euid is None else euid
    settings = _with_governance_socket(settings, state, euid)
    _hub(settings, c, state)
    _authenticator(settings, c, users)
    _spawner(settings, c, state, euid)
    services = _services(settings)
    names = [s["name"] for s in services]
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = _roles(settings, users, names)
    c.JupyterHub.default_url = LandingPage(str(users.path), "reports" in names)
    c.JupyterHub.template_paths = [str(settings.path("hub_templates_dir"))]
    c.JupyterHub.template_vars = {
        "workbench_reports_only": HomePage(str(users.path), "reports" in names),
        "workbench_access": Access(str(users.path), "reports" in names),
        "workbench_no_server": NoServerUsers(str(users.path)),
    }
    return c


def _hub(settings: Settings, c, state: Path) -> None:
    scheme = "https" if settings.hub_ssl_cert else "http"
    c.JupyterHub.bind_url = f"{scheme}://{settings.hub_ip}:{settings.hub_port}/"
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = settings.hub_api_port
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.command = [str(settings.path("proxy_command"))]
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    if settings.profile == "production" and not settings.hub_db_url:
        raise ConfigError(
            "The production profile needs setting 'hub_db_url' (e.g. postgresql://hub@db/jupyterhub); "
            "SQLite is for the local profile."
        )
    if settings.profile == "production" and not settings.governance_socket:
        raise ConfigError(
            "The production profile needs setting 'governance_socket' (e.g. /run/workbench/governance.sock): the hub "
            "runs the governance service there as service_user, and every governed read is decided and recorded by it."
        )
    c.JupyterHub.db_url = database_url(settings)
    c.JupyterHub.cleanup_servers = settings.hub_cleanup_servers
    if settings.hub_ssl_cert:
        c.JupyterHub.ssl_cert = str(settings.path("hub_ssl_cert"))
        c.JupyterHub.ssl_key = str(settings.path("hub_ssl_key"))


def database_url(settings: Settings) -> str:
    """The hub database: `hub_db_url`, else SQLite in the hub state folder."""
    return settings.hub_db_url or f"sqlite:///{settings.path('hub_state_dir') / 'jupyterhub.sqlite'}"


def _authenticator(settings: Settings, c, users: UsersFile) -> None:
    c.JupyterHub.authenticator_class = AUTHENTICATORS[settings.profile]
    c.UsersFileGroups.users_file = str(users.path)
    c.Authenticator.manage_groups = True  # groups come from the users file, at each login and refresh
    c.Authenticator.auth_refresh_age = AUTH_REFRESH_SECONDS
    c.Authenticator.refresh_pre_spawn = True
    # The users the file names exist from hub start (admin panel, groups), before they first log in.
    c.Authenticator.allowed_users = set(users.users) | {settings.hub_admin_user}
    if settings.profile == "local":
        # Only accounts an admin made (`workbench hub user`) have a password, so no further allow-list.
        c.Authenticator.allow_all = True
        c.LocalPasswordAuthenticator.dbm_path = str(password_file(settings))
        c.LocalPasswordAuthenticator.min_password_length = MIN_PASSWORD_LENGTH
        c.LocalPasswordAuthenticator.allowed_failed_logins = 5
        c.LocalPasswordAuthenticator.lockout_seconds = 120
    else:
        c.Authenticator.allow_all = False


def _with_governance_socket(settings: Settings, state: Path, euid: int) -> Settings:
    """Local profile, hub as root: servers run unprivileged and cannot write the audit log the hub's account
    owns, so the hub runs the governance service (as root) and its servers record through it."""
    if settings.profile == "local" and euid == 0 and not settings.governance_socket:
        return settings.with_overrides(governance_socket=str(state / GOVERNANCE_SOCKET))
    return settings


def _spawner(settings: Settings, c, state: Path, euid: int) -> None:
    root_local = settings.profile == "local" and euid == 0
    c.JupyterHub.spawner_class = ROOT_LOCAL_SPAWNER if root_local else SPAWNERS[settings.profile]
    c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
    # Local servers run as the hub's user, or, when the hub is root, as the unprivileged hub_server_user.
    # In production LocalProcessSpawner switches to the user's own account: never root.
    c.Spawner.args = []
    if root_local:
        c.UnprivilegedLocalSpawner.server_user = settings.hub_server_user
    c.Spawner.default_url = "/lab"
    c.Spawner.environment = server_environment(settings)
    c.Spawner.pre_spawn_hook = PreSpawnHooks(
        RefuseServerWithoutRole(str(settings.path("hub_users_file"))),
        ApplyGroupLimits(str(settings.path("hub_users_file"))),
        ProvideNotebooks(str(settings.path("notebooks_dir"))),
    )
    c.Spawner.start_timeout = SPAWN_TIMEOUT_SECONDS
    c.Spawner.http_timeout = SPAWN_TIMEOUT_SECONDS
    c.SimpleLocalProcessSpawner.home_dir_template = str(state / "homes" / "{username}")
    c.UnprivilegedLocalSpawner.home_dir_template = str(state / "homes" / "{username}")


def _services(settings: Settings) -> list[dict]:
    env = service_environment(settings)
    python = sys.executable
    wanted = settings.hub_services
    services: list[dict] = []
    for name, port in (("reports", settings.reports_port), ("mlflow", settings.mlflow_ui_port)):
        if name in wanted:
            services.append(
                {
                    "name": name,
                    "url": f"http://127.0.0.1:{port}",
                    "command": [python, "-m", "workbench.hub.service", name],
                    "environment": env,
                    "cwd": settings.home,
                    "oauth_no_confirm": True,
                    "display": True,
                    "info": {"description": SERVICE_DESCRIPTIONS[name]},
                }
            )
    if settings.governance_socket:
        governance = {
            "name": "governance",
            "display": False,
            "command": [python, "-m", "workbench.governance", "serve"],
            "environment": env,
            "cwd": settings.home,
        }
        if settings.profile == "production":
            governance["user"] = settings.service_user  # the only account that may write the audit log
        services.append(governance)
    if "idle-culler" in wanted:
        timeout = settings.hub_idle_timeout
        services.append(
            {
                "name": "idle-culler",
                "display": False,
                "command": [
                    python,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={timeout}",
                    f"--cull-every={max(30, min(300, timeout // 2))}",
                ],
            }
        )
    if "scheduler" in wanted:
        services.append(
            {
                "name": "scheduler",
                "display": False,
                "command": [python, "-m", "workbench", "scheduler"],
                "environment": {**env, "WORKBENCH_JOB_IDENTITY": "service"},
                "cwd": settings.home,
            }
        )
    return services


def _roles(settings: Settings, users: UsersFile, services: list[str]) -> list[dict]:
    roles = [
        {
            "name": "user",
            "description": "Every user: who they are. Servers and services come from group roles.",
            "scopes": BASE_USER_SCOPES,
        }
    ]
    for group in users.groups.values():
        scopes = (["self"] if group.server else []) + [
            f"access:services!service={s}" for s in group.services if s in services
        ]
        if scopes:
            roles.append(
                {
                    "name": f"workbench-{group.name}",
                    "description": group.description or group.name,
                    "scopes": scopes,
                    "groups": [group.name],
                }
            )
    # The first admin by name (its account exists before anyone can sign up), the rest through their group.
    roles.append(
        {
            "name": "admin",
            "users": [settings.hub_admin_user],
            "groups": [g.name for g in users.groups.values() if g.admin],
        }
    )
    if "idle-culler" in services:
        roles.append(
            {
                "name": "idle-culler",
                "description": "Stop servers idle for hub_idle_timeout seconds",
                "scopes": CULLER_SCOPES,
                "services": ["idle-culler"],
            }
        )
    return roles


def server_environment(settings: Settings) -> dict[str, str]:
    """WORKBENCH_* for single-user servers: the hub's settings, minus secrets, the hub's own settings, and
    identity (a server learns its user and groups from the hub, never from a variable)."""
    return _environment(
        settings,
        lambda f: (
            not (f.metadata.get("secret") or f.name in ("user", "groups") or f.name.startswith(("hub_", "proxy_")))
        ),
    )


def service_environment(settings: Settings) -> dict[str, str]:
    """WORKBENCH_* for hub services (trusted, run by the hub): every setting but identity, the admin password
    and the hub database URL (it may hold a password)."""
    return _environment(settings, lambda f: f.name not in ("user", "groups", "hub_admin_password", "hub_db_url"))


def hub_environment(settings: Settings) -> dict[str, str]:
    """WORKBENCH_* for the hub process itself: the effective settings, so its config file sees what `workbench hub` saw."""
    return _environment(settings, lambda f: f.name not in ("user", "groups", "hub_admin_password"))


def _environment(settings: Settings, keep) -> dict[str, str]:
    env = {}
    for f in fields(settings):
        if f.metadata.get("internal") or not keep(f):
            continue
        value = getattr(settings, f.name)
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, tuple):
            value = ",".join(value)
        env[ENV_PREFIX + f.name.upper()] = str(value)
    return env


def _group_specs(users: CachedUsersFile, user) -> list:
    specs = users.get().groups
    return [specs[g.name] for g in user.groups if g.name in specs]


def may_have_server(users: CachedUsersFile, user) -> bool:
    """True for an admin or someone in a group that gives a server of their own (what `self` grants in the roles)."""
    return bool(getattr(user, "admin", False)) or any(g.server for g in _group_specs(users, user))


def _may_only_read_reports(users: CachedUsersFile, user) -> bool:
    """True for someone whose groups give no server of their own but do give the reports (stakeholders)."""
    return not may_have_server(users, user) and any("reports" in g.services for g in _group_specs(users, user))


class LandingPage:
    """`JupyterHub.default_url`: people without a server of their own (stakeholders) land on the reports
    site; admins on the hub's home page (their own server starts only when they ask); everyone else gets
    the hub's default (their own server, started if needed)."""

    def __init__(self, users_file: str, reports: bool):
        self.users = CachedUsersFile(users_file)
        self.reports = reports

    def __call__(self, handler) -> str:
        user = handler.current_user
        if user is None:
            return ""
        if getattr(user, "admin", False):
            return handler.base_url + "hub/home"  # (the hub's pages are under base_url + hub/)
        if self.reports and _may_only_read_reports(self.users, user):
            return handler.base_url + "services/reports/"
        if not may_have_server(self.users, user):
            return handler.base_url + "hub/home"  # (the hub's pages are under base_url + hub/)
        return ""


class HomePage:
    """A `JupyterHub.template_vars` value, called with the current user: True when the home page should
    offer the reports instead of a "Start My Server" button that would answer 403 (read by
    hub_templates_dir/home.html)."""

    def __init__(self, users_file: str, reports: bool):
        self.users = CachedUsersFile(users_file)
        self.reports = reports

    def __call__(self, user) -> bool:
        return self.reports and user is not None and _may_only_read_reports(self.users, user)


class Access:
    """A `JupyterHub.template_vars` value, called with the current user: what their account may use, for the
    home page and the refusal pages (a stakeholder on /user/<name>/lab is told what they can do instead)."""

    def __init__(self, users_file: str, reports: bool):
        self.users = CachedUsersFile(users_file)
        self.reports = reports

    def __call__(self, user) -> dict:
        if user is None:
            return {"server": False, "reports": False, "groups": []}
        groups = _group_specs(self.users, user)
        return {
            "server": may_have_server(self.users, user),
            "reports": self.reports
            and (bool(getattr(user, "admin", False)) or any("reports" in g.services for g in groups)),
            "groups": [g.name for g in groups],
        }


class NoServerUsers:
    """A `JupyterHub.template_vars` value, called with the current user: for an admin, the names of the users whose
    role gives no server (the admin panel hides its "Start Server" for them; the spawn is refused anyway)."""

    def __init__(self, users_file: str):
        self.users = CachedUsersFile(users_file)

    def __call__(self, user) -> list[str]:
        if user is None or not getattr(user, "admin", False) or getattr(user, "db", None) is None:
            return []
        from jupyterhub import orm

        return sorted(
            u.name for u in user.db.query(orm.User) if NAME_RE.match(u.name) and not may_have_server(self.users, u)
        )


class RefuseServerWithoutRole:
    """`Spawner.pre_spawn_hook` part: no server for someone whose role cannot use one, whoever asks (an admin's
    "Start Server" included): it would only refuse its owner and then log 403s."""

    def __init__(self, users_file: str):
        self.users = CachedUsersFile(users_file)

    def __call__(self, spawner) -> None:
        if not may_have_server(self.users, spawner.user):
            raise ServerRefused(
                f"{spawner.user.name}'s groups ({', '.join(g.name for g in spawner.user.groups) or 'none'}) give no "
                f"notebook server. Add them to a group with `server: true` in the users file if they need one."
            )


class ServerRefused(Exception):
    """Raised inside the hub when a server would start for someone whose role has none (shown on the spawn page)."""

    jupyterhub_message = ""

    def __init__(self, message: str):
        super().__init__(message)
        self.jupyterhub_message = message


class ApplyGroupLimits:
    """`Spawner.pre_spawn_hook`: the largest memory and Spark driver memory among the user's groups."""

    def __init__(self, users_file: str):
        self.users = CachedUsersFile(users_file)

    def __call__(self, spawner) -> None:
        limits = self.users.get().limits_for([g.name for g in spawner.user.groups])
        if "memory" in limits:
            spawner.mem_limit = limits["memory"]
        if "spark_driver_memory" in limits:
            spawner.environment = {
                **spawner.environment,
                ENV_PREFIX + "SPARK_DRIVER_MEMORY": limits["spark_driver_memory"],
            }
