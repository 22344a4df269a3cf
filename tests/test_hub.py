"""The hub's configuration, checked on plain traitlets Configs (no hub started: see tests/integration/test_hub.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config, PyFileConfigLoader

from tests.conftest import REPO
from workbench.config import load_settings
from workbench.errors import ConfigError, IdentityError
from workbench.hub import REQUIRED_GROUPS, apply_config, load_users_file
from workbench.hub.configure import ApplyGroupLimits, HomePage, LandingPage
from workbench.identity import current_identity

USERS = """
groups:
  data-scientists: {server: true, services: [reports, mlflow], limits: {memory: 4G, spark_driver_memory: 2g}}
  data-stewards: {server: true, services: [reports, mlflow], limits: {memory: 6G, spark_driver_memory: 1g}}
  stakeholders: {server: false, services: [reports]}
  admins: {admin: true, server: true, services: [reports, mlflow]}
users:
  ada: [data-scientists]
  sam: [stakeholders]
  root-ish: [admins, data-stewards, data-scientists]
"""


@pytest.fixture
def hub_settings(tmp_path):
    users = tmp_path / "users.yaml"
    users.write_text(USERS)
    return load_settings(env={"WORKBENCH_HOME": str(REPO)}).with_overrides(
        hub_state_dir=str(tmp_path / "state"),
        hub_users_file=str(users),
        hub_services=("reports", "mlflow", "idle-culler"),
    )


def roles_by_name(c) -> dict[str, dict]:
    return {r["name"]: r for r in c.JupyterHub.load_roles}


# ---- apply_config: local profile --------------------------------------------------------------
def test_local_profile_needs_no_system_users_and_keeps_state_in_one_folder(hub_settings, tmp_path):
    c = apply_config(hub_settings, Config(), euid=1000)
    assert c.JupyterHub.authenticator_class == "workbench.hub.auth.LocalUsersFileAuthenticator"
    assert c.JupyterHub.spawner_class == "jupyterhub.spawner.SimpleLocalProcessSpawner"
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000/"
    assert c.JupyterHub.hub_ip == "127.0.0.1"
    state = tmp_path / "state"
    assert c.JupyterHub.db_url == f"sqlite:///{state / 'jupyterhub.sqlite'}"
    assert c.JupyterHub.cookie_secret_file == str(state / "jupyterhub_cookie_secret")
    assert c.SimpleLocalProcessSpawner.home_dir_template == str(state / "homes" / "{username}")
    assert c.ConfigurableHTTPProxy.command == [str(REPO / ".npm/node_modules/.bin/configurable-http-proxy")]
    # every person has their own password, in an owner-only file in the state folder
    assert c.LocalPasswordAuthenticator.dbm_path == str(state / "passwords.dbm")
    assert c.LocalPasswordAuthenticator.min_password_length >= 8
    # the users file's users exist from hub start (admin panel, groups)
    assert c.Authenticator.allowed_users == {"ada", "sam", "root-ish", "admin"}


@pytest.mark.parametrize("profile,euid", [("local", 0), ("local", 1000), ("production", 0)])
def test_no_server_ever_runs_as_root(hub_settings, profile, euid):
    settings = hub_settings.with_overrides(
        profile=profile, hub_db_url="postgresql://hub@db/jupyterhub", governance_socket="/run/wb/governance.sock"
    )
    c = apply_config(settings, Config(), euid=euid)
    assert c.Spawner.args == []  # never --allow-root
    if profile == "local" and euid == 0:  # a root hub: servers become the unprivileged hub_server_user
        assert c.JupyterHub.spawner_class == "workbench.hub.spawner.UnprivilegedLocalSpawner"
        assert c.UnprivilegedLocalSpawner.server_user == "nobody"


def test_a_root_local_hub_runs_the_governance_service_for_its_unprivileged_servers(hub_settings, tmp_path):
    c = apply_config(hub_settings, Config(), euid=0)
    socket_path = str(tmp_path / "state" / "governance.sock")
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["governance"]["command"][-3:] == ["-m", "workbench.governance", "serve"]
    assert "user" not in services["governance"]  # the hub's own account (root) owns the audit log
    assert services["governance"]["environment"]["WORKBENCH_GOVERNANCE_SOCKET"] == socket_path
    assert c.Spawner.environment["WORKBENCH_GOVERNANCE_SOCKET"] == socket_path
    assert "governance" not in {s["name"] for s in apply_config(hub_settings, Config(), euid=1000).JupyterHub.services}


def test_production_runs_the_governance_service_as_the_service_account(hub_settings):
    settings = hub_settings.with_overrides(
        profile="production", hub_db_url="postgresql://hub@db/jupyterhub", service_user="wbdata"
    )
    with pytest.raises(ConfigError, match="governance_socket"):
        apply_config(settings, Config(), euid=0)
    c = apply_config(settings.with_overrides(governance_socket="/run/wb/governance.sock"), Config(), euid=0)
    governance = {s["name"]: s for s in c.JupyterHub.services}["governance"]
    assert governance["user"] == "wbdata"
    assert c.Spawner.environment["WORKBENCH_GOVERNANCE_SOCKET"] == "/run/wb/governance.sock"


def test_a_root_local_hub_keeps_its_state_from_the_servers(tmp_path):
    from workbench.hub.launcher import protect_state

    state = tmp_path / "state"
    state.mkdir()
    (state / "jupyterhub_cookie_secret").write_text("secret")
    (state / "jupyterhub_cookie_secret").chmod(0o644)
    (state / "homes").mkdir()
    protect_state(state, f"sqlite:///{state / 'jupyterhub.sqlite'}")
    assert stat.S_IMODE(state.stat().st_mode) == 0o711  # passable to the homes, not listable
    for name in ("jupyterhub_cookie_secret", "jupyterhub.sqlite"):  # the database exists before the hub makes it
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600


def test_roles_give_servers_and_services_by_group(hub_settings):
    roles = roles_by_name(apply_config(hub_settings, Config(), euid=1000))
    assert "self" not in roles["user"]["scopes"]  # a user in no group gets no server
    assert roles["workbench-data-scientists"]["groups"] == ["data-scientists"]
    assert "self" in roles["workbench-data-scientists"]["scopes"]
    assert set(roles["workbench-stakeholders"]["scopes"]) == {"access:services!service=reports"}
    assert roles["admin"]["groups"] == ["admins"] and roles["admin"]["users"] == ["admin"]
    assert roles["idle-culler"]["services"] == ["idle-culler"]


def test_disabled_services_are_neither_run_nor_granted(hub_settings):
    c = apply_config(hub_settings.with_overrides(hub_services=("reports",)), Config(), euid=1000)
    assert [s["name"] for s in c.JupyterHub.services] == ["reports"]
    scopes = {s for r in c.JupyterHub.load_roles for s in r.get("scopes", [])}
    assert "access:services!service=mlflow" not in scopes


def test_services_run_behind_the_hub_on_127_0_0_1(hub_settings):
    services = {s["name"]: s for s in apply_config(hub_settings, Config(), euid=1000).JupyterHub.services}
    assert services["reports"]["url"] == f"http://127.0.0.1:{hub_settings.reports_port}"
    assert services["reports"]["command"] == [sys.executable, "-m", "workbench.hub.service", "reports"]
    assert services["mlflow"]["command"][-2:] == ["workbench.hub.service", "mlflow"]
    assert f"--timeout={hub_settings.hub_idle_timeout}" in services["idle-culler"]["command"]
    assert services["reports"]["environment"]["WORKBENCH_HUB_STATE_DIR"] == hub_settings.hub_state_dir
    assert "WORKBENCH_HUB_DB_URL" not in services["reports"]["environment"]


def test_the_scheduler_service_is_configured_without_building_the_cli(hub_settings):
    """The hub config once built the whole CLI parser to learn whether `workbench scheduler` exists;
    it is part of the package, so the config names it without importing workbench.cli."""
    settings = hub_settings.with_overrides(hub_services=("reports", "scheduler"))
    services = {s["name"]: s for s in apply_config(settings, Config(), euid=1000).JupyterHub.services}
    assert services["scheduler"]["command"] == [sys.executable, "-m", "workbench", "scheduler"]
    assert services["scheduler"]["environment"]["WORKBENCH_JOB_IDENTITY"] == "service"
    code = (
        "import sys; from traitlets.config import Config; from workbench.config import load_settings; "
        "from workbench.hub import apply_config; "
        f"s = load_settings(env={{'WORKBENCH_HOME': {str(REPO)!r}}}).with_overrides("
        f"hub_state_dir={str(settings.hub_state_dir)!r}, hub_users_file={str(settings.hub_users_file)!r}, "
        "hub_services=('reports', 'scheduler')); "
        "apply_config(s, Config(), euid=1000); "
        "print(sorted(m for m in sys.modules if m.startswith('workbench.cli')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_servers_get_settings_from_the_hub_but_no_identity_or_secret(hub_settings):
    settings = hub_settings.with_overrides(spark_master="spark://10.0.0.5:7077", user="mallory", groups=("admins",))
    env = apply_config(settings, Config(), euid=1000).Spawner.environment
    assert env["WORKBENCH_SPARK_MASTER"] == "spark://10.0.0.5:7077"
    assert env["WORKBENCH_HOME"] == str(REPO) and env["WORKBENCH_LAKE_ROOT"] == "lake"
    for hidden in (
        "WORKBENCH_USER",
        "WORKBENCH_GROUPS",
        "WORKBENCH_MASK_SALT",
        "WORKBENCH_HUB_ADMIN_PASSWORD",
        "WORKBENCH_HUB_STATE_DIR",
    ):
        assert hidden not in env


def test_apply_config_only_sets_values(hub_settings):
    once = apply_config(hub_settings, Config(), euid=1000)
    twice = apply_config(hub_settings, apply_config(hub_settings, Config(), euid=1000), euid=1000)
    for section, key in [
        ("JupyterHub", "load_roles"),
        ("JupyterHub", "services"),
        ("Spawner", "environment"),
        ("Spawner", "args"),
        ("Authenticator", "manage_groups"),
    ]:
        assert once[section][key] == twice[section][key]


# ---- apply_config: production profile ---------------------------------------------------------
def test_production_profile_uses_system_users_postgres_and_tls(hub_settings, tmp_path):
    settings = hub_settings.with_overrides(
        profile="production",
        hub_db_url="postgresql://hub@db/jupyterhub",
        hub_ip="0.0.0.0",
        hub_port=443,
        hub_ssl_cert="/etc/hub/cert.pem",
        hub_ssl_key="/etc/hub/key.pem",
        governance_socket="/run/wb/governance.sock",
    )
    c = apply_config(settings, Config(), euid=0)
    assert c.JupyterHub.authenticator_class == "workbench.hub.auth.PAMUsersFileAuthenticator"
    assert c.JupyterHub.spawner_class == "jupyterhub.spawner.LocalProcessSpawner"
    assert c.JupyterHub.db_url == "postgresql://hub@db/jupyterhub"
    assert c.JupyterHub.bind_url == "https://0.0.0.0:443/"
    assert c.JupyterHub.ssl_cert == "/etc/hub/cert.pem"
    assert c.Authenticator.allow_all is False
    assert c.Authenticator.allowed_users == {"ada", "sam", "root-ish", "admin"}


def test_servers_outlive_a_hub_restart_only_when_asked(hub_settings):
    assert apply_config(hub_settings, Config(), euid=1000).JupyterHub.cleanup_servers is True
    kept = apply_config(hub_settings.with_overrides(hub_cleanup_servers=False), Config(), euid=1000)
    assert kept.JupyterHub.cleanup_servers is False


def test_production_without_a_database_url_is_refused(hub_settings):
    with pytest.raises(ConfigError, match="hub_db_url"):
        apply_config(hub_settings.with_overrides(profile="production"), Config(), euid=1000)


# ---- the config file ----------------------------------------------------------------------------
def test_the_config_file_loads_and_applies_site_overrides_in_order(hub_settings, tmp_path, monkeypatch):
    folder = tmp_path / "hub_config"
    (folder / "jupyterhub_config.d").mkdir(parents=True)
    shutil.copy(REPO / "hub_config" / "jupyterhub_config.py", folder)
    (folder / "jupyterhub_config.d" / "10-limit.py").write_text(
        "c.JupyterHub.concurrent_spawn_limit = 5\nc.JupyterHub.active_server_limit = 9\n"
    )
    (folder / "jupyterhub_config.d" / "20-limit.py").write_text("c.JupyterHub.concurrent_spawn_limit = 7\n")
    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_HUB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WORKBENCH_HUB_USERS_FILE", hub_settings.hub_users_file)
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(folder)).load_config()
    assert c.JupyterHub.authenticator_class == "workbench.hub.auth.LocalUsersFileAuthenticator"
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path / 'state' / 'jupyterhub.sqlite'}"
    assert c.JupyterHub.concurrent_spawn_limit == 7 and c.JupyterHub.active_server_limit == 9


def test_the_committed_config_file_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_HOME", str(REPO))
    monkeypatch.setenv("WORKBENCH_HUB_STATE_DIR", str(tmp_path))
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(REPO / "hub_config")).load_config()
    assert {s["name"] for s in c.JupyterHub.services} >= {"reports", "mlflow", "idle-culler"}


# ---- the users file ----------------------------------------------------------------------------
def test_the_committed_users_file_declares_the_workbench_groups():
    users = load_users_file(REPO / "hub_config" / "users.yaml")
    assert set(REQUIRED_GROUPS) <= set(users.groups)
    assert not users.groups["stakeholders"].server and users.groups["stakeholders"].services == ("reports",)
    assert "admins" in users.groups_for("admin")


@pytest.mark.parametrize(
    "text,needle",
    [
        ("groups: {admins: {}}\n", "data-scientists, data-stewards, stakeholders are missing"),
        (USERS + "  eve: [hackers]\n", "user 'eve' is in undeclared group(s) hackers"),
        (USERS.replace("memory: 4G", "memory: lots"), "limits.memory must be a size"),
        (USERS.replace("services: [reports]", "services: [jupyter]"), "unknown service(s) jupyter"),
        (USERS.replace("server: false", "server: nope"), "'server' must be true or false"),
    ],
)
def test_an_invalid_users_file_names_the_file_and_the_entry(tmp_path, text, needle):
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_users_file(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_limits_take_the_largest_among_a_users_groups(hub_settings):
    users = load_users_file(hub_settings.hub_users_file)
    assert users.limits_for(["data-scientists", "data-stewards"]) == {"memory": "6G", "spark_driver_memory": "2g"}
    assert users.limits_for(["stakeholders"]) == {}


def test_group_limits_are_applied_before_a_server_starts(hub_settings):
    spawner = SimpleNamespace(
        user=SimpleNamespace(groups=[SimpleNamespace(name="data-scientists")]),
        mem_limit=None,
        environment={"WORKBENCH_SPARK_DRIVER_MEMORY": "8g", "OTHER": "1"},
    )
    ApplyGroupLimits(hub_settings.hub_users_file)(spawner)
    assert spawner.mem_limit == "4G"
    assert spawner.environment == {"WORKBENCH_SPARK_DRIVER_MEMORY": "2g", "OTHER": "1"}


@pytest.mark.parametrize(
    "groups,landing",
    [
        (["stakeholders"], "/services/reports/"),
        (["data-scientists"], ""),
        (["stakeholders", "data-scientists"], ""),
        ([], "/hub/home"),
    ],
)
def test_people_without_a_server_land_on_the_reports(hub_settings, groups, landing):
    user = SimpleNamespace(groups=[SimpleNamespace(name=g) for g in groups])
    handler = SimpleNamespace(current_user=user, base_url="/")
    assert LandingPage(hub_settings.hub_users_file, reports=True)(handler) == landing
    # ... and their home page offers the reports instead of a server they may not start
    assert HomePage(hub_settings.hub_users_file, reports=True)(user) is (landing == "/services/reports/")
    assert HomePage(hub_settings.hub_users_file, reports=False)(user) is False


def test_the_home_page_template_is_ours(hub_settings):
    c = apply_config(hub_settings, Config())
    (folder,) = c.JupyterHub.template_paths
    template = Path(folder) / "home.html"
    assert template.is_file() and "workbench_reports_only" in template.read_text()
    assert isinstance(c.JupyterHub.template_vars["workbench_reports_only"], HomePage)


# ---- group membership from the users file, at login and at refresh ------------------------------
def test_membership_follows_the_users_file_at_login_and_refresh(tmp_path):
    from jupyterhub.auth import Authenticator

    from workbench.hub.auth import UsersFileGroups

    class PasswordIsName(Authenticator):  # a real (trivial) authenticator under the mixin
        async def authenticate(self, handler, data):
            return data["username"] if data["password"] == data["username"] else None

    class Under(UsersFileGroups, PasswordIsName):
        pass

    path = tmp_path / "users.yaml"
    path.write_text(USERS)
    auth = Under(users_file=str(path))
    login = lambda name, password: asyncio.run(auth.authenticate(None, {"username": name, "password": password}))  # noqa: E731
    assert login("ada", "ada") == {"name": "ada", "groups": ["data-scientists"]}
    assert login("ada", "x") is None
    assert login("zed", "zed") == {"name": "zed", "groups": []}

    path.write_text(USERS.replace("ada: [data-scientists]", "ada: [stakeholders]"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    refreshed = asyncio.run(auth.refresh_user(SimpleNamespace(name="ada")))
    assert refreshed == {"name": "ada", "groups": ["stakeholders"]}


# ---- accounts -----------------------------------------------------------------------------------
def test_first_admin_account_is_created_once_with_its_password(hub_settings):
    from workbench.hub import accounts
    from workbench.hub.launcher import ensure_first_admin

    settings = hub_settings.with_overrides(hub_admin_password="a-long-secret-1")
    assert ensure_first_admin(settings, prompt=None) is True
    assert accounts.account_exists(settings, "admin")
    assert ensure_first_admin(settings.with_overrides(hub_admin_password=""), prompt=None) is False  # exists: no prompt
    assert accounts.set_password(settings, "Ada", "another-secret-2") is True and accounts.account_exists(
        settings, "ada"
    )


def test_first_admin_without_a_password_or_a_terminal_says_what_to_set(hub_settings):
    from workbench.hub.launcher import ensure_first_admin

    with pytest.raises(ConfigError, match="WORKBENCH_HUB_ADMIN_PASSWORD"):
        ensure_first_admin(hub_settings, prompt=None)


@pytest.mark.parametrize("password", ["short", "password123"])
def test_weak_passwords_are_refused(password):
    from workbench.hub.accounts import check_password_strength

    with pytest.raises(ConfigError):
        check_password_strength(password)


def _local_auth(settings):
    from workbench.hub.auth import LocalUsersFileAuthenticator

    c = apply_config(settings, Config(), euid=1000)
    return LocalUsersFileAuthenticator(config=c)


def _login(auth, name, password):
    return asyncio.run(auth.authenticate(SimpleNamespace(), {"username": name, "password": password}))


def test_local_logins_check_the_password_file_and_nobody_claims_a_name_by_logging_in_first(hub_settings):
    from workbench.hub import accounts

    settings = hub_settings.with_overrides(hub_state_dir=hub_settings.hub_state_dir)
    assert accounts.set_password(settings, "ada", "ada-long-secret-1") is True
    auth = _local_auth(settings)
    assert _login(auth, "ada", "ada-long-secret-1") == {"name": "ada", "groups": ["data-scientists"]}
    assert _login(auth, "ada", "ada-long-secret-2") is None
    # sam is in the users file but has no account: a first login must not set his password (FirstUse's default)
    assert _login(auth, "sam", "whatever-i-choose-1") is None
    assert not accounts.account_exists(settings, "sam") and _login(auth, "sam", "whatever-i-choose-1") is None
    # the hashes are bcrypt, in owner-only files
    path = accounts.password_file(settings)
    files = [f for f in path.parent.iterdir() if f.name.startswith(path.name)]
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert accounts.stored_hash(path, "ada").startswith(b"$2")
    assert b"ada-long-secret-1" not in b"".join(f.read_bytes() for f in files)


def test_guessing_a_password_locks_the_name(hub_settings):
    from tornado.web import HTTPError

    from workbench.hub import accounts

    accounts.set_password(hub_settings, "ada", "ada-long-secret-1")
    auth = _local_auth(hub_settings)
    for guess in range(5):
        assert _login(auth, "ada", f"guess-{guess}-xxxx") is None
    with pytest.raises(HTTPError) as refused:  # even the right password, for the lock-out's two minutes
        _login(auth, "ada", "ada-long-secret-1")
    assert refused.value.status_code == 429 and "Too many failed logins" in refused.value.log_message
    auth._failures["ada"] = (5, auth._failures["ada"][1] - auth.lockout_seconds)  # two minutes later
    assert _login(auth, "ada", "ada-long-secret-1")["name"] == "ada"


def test_changing_ones_password_keeps_the_strength_rules(hub_settings):
    from workbench.hub import accounts

    accounts.set_password(hub_settings, "ada", "ada-long-secret-1")
    auth = _local_auth(hub_settings)
    assert "common passwords" in auth.reset_password("ada", "password123")
    assert _login(auth, "ada", "ada-long-secret-1")["name"] == "ada"
    assert "success" in auth.reset_password("ada", "a-new-long-secret-2")
    assert _login(auth, "ada", "a-new-long-secret-2")["name"] == "ada"
    assert _login(auth, "ada", "ada-long-secret-1") is None


def test_the_users_files_users_and_groups_exist_from_hub_start(hub_settings):
    from jupyterhub import orm

    auth = _local_auth(hub_settings)
    db = orm.new_session_factory("sqlite://")()
    users = {name: orm.User(name=name) for name in ("ada", "sam", "nora")}
    db.add_all(users.values())
    db.commit()
    for user in users.values():  # what the hub does at start for every user in its database
        auth.add_user(user)
    assert {g.name for g in db.query(orm.Group)} == set(REQUIRED_GROUPS)
    assert [g.name for g in users["ada"].groups] == ["data-scientists"]
    assert [g.name for g in users["sam"].groups] == ["stakeholders"]
    assert users["nora"].groups == []
    path = Path(hub_settings.hub_users_file)  # the file changes between two starts: membership follows it
    path.write_text(USERS.replace("ada: [data-scientists]", "ada: [stakeholders]"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    auth.add_user(users["ada"])
    assert [g.name for g in users["ada"].groups] == ["stakeholders"]


def test_an_admin_lands_on_the_home_page_without_starting_a_server(hub_settings):
    admin = SimpleNamespace(admin=True, groups=[SimpleNamespace(name="admins")])
    handler = SimpleNamespace(current_user=admin, base_url="/")
    assert LandingPage(hub_settings.hub_users_file, reports=True)(handler) == "/hub/home"


@pytest.mark.parametrize(
    "groups,admin,refused",
    [(["stakeholders"], False, True), ([], False, True), (["data-scientists"], False, False), ([], True, False)],
)
def test_no_server_starts_for_a_role_without_one_whoever_asks(hub_settings, groups, admin, refused):
    from workbench.hub.configure import RefuseServerWithoutRole, ServerRefused

    user = SimpleNamespace(name="sam", admin=admin, groups=[SimpleNamespace(name=g) for g in groups])
    hook = RefuseServerWithoutRole(hub_settings.hub_users_file)
    if refused:
        with pytest.raises(ServerRefused, match="give no notebook server"):
            hook(SimpleNamespace(user=user))
    else:
        hook(SimpleNamespace(user=user))


# ---- identity outside and inside the hub --------------------------------------------------------
def test_jupyterhub_user_alone_changes_nothing(monkeypatch, tmp_path):
    settings = load_settings(env={"WORKBENCH_HOME": str(tmp_path), "WORKBENCH_USER": "ada"})
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.setenv("JUPYTERHUB_USER", "admin")
    identity = current_identity(settings)
    assert identity.user == "ada" and not identity.verified


def test_inside_the_hub_an_unreachable_hub_is_an_error_not_a_fallback(monkeypatch, tmp_path):
    from tests.conftest import free_port

    settings = load_settings(env={"WORKBENCH_HOME": str(tmp_path), "WORKBENCH_GROUPS": "admins"})
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{free_port()}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "not-a-token")
    with pytest.raises(IdentityError, match="did not confirm who you are"):
        current_identity(settings)
