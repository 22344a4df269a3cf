"""Who is asking: in production only the governance service says (from the socket's peer uid), nothing
in the process changes it, and no service means no identity; the local profile labels every answer
`local-unverified`. The service runs here in a thread on a socket in a temp folder."""

from __future__ import annotations

import http.server
import json
import os
import pwd
import threading

import pytest
import yaml

from tests.conftest import REPO
from workbench.config import load_settings
from workbench.errors import ConfigError, GovernanceUnavailable
from workbench.identity import current_identity

FORGED = {
    "WORKBENCH_USER": "mallory",
    "WORKBENCH_GROUPS": "data-stewards",
    "WORKBENCH_JOB_IDENTITY": "service",
}
ME = pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def files(tmp_path):
    users = {
        "groups": {g: {} for g in ("data-scientists", "data-stewards", "stakeholders", "admins")},
        "users": {"ada": ["data-scientists"]},
    }
    (tmp_path / "etc").mkdir(mode=0o755)
    (tmp_path / "etc" / "users.yaml").write_text(yaml.safe_dump(users))
    (tmp_path / "etc" / "catalog.yaml").write_text((REPO / "hub_config" / "catalog.yaml").read_text())
    for f in (tmp_path / "etc").iterdir():
        f.chmod(0o644)
    return tmp_path


def env_for(root, profile: str, **extra) -> dict[str, str]:
    return {
        "WORKBENCH_HOME": str(REPO),
        "WORKBENCH_PROFILE": profile,
        "WORKBENCH_AUDIT_DIR": str(root / "audit"),
        "WORKBENCH_HUB_USERS_FILE": str(root / "etc" / "users.yaml"),
        "WORKBENCH_CATALOG_PATH": str(root / "etc" / "catalog.yaml"),
        "WORKBENCH_GOVERNANCE_SOCKET": str(root / "governance.sock"),
        "WORKBENCH_SERVICE_USER": ME,
        "WORKBENCH_SERVICE_GROUPS": "data-stewards",
        "WORKBENCH_MASK_SALT": "identity-test-salt",
        **extra,
    }


@pytest.fixture
def service(files):
    """Start a governance service for `env` in a thread; stopped at the end."""
    from workbench.governance.service import GovernanceService, bind

    servers = []

    def start(env):
        settings = load_settings(env=env)
        server = bind(settings)
        server.service = GovernanceService(settings)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return settings

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_production_without_a_service_has_no_identity_not_a_fallback(files, monkeypatch):
    for key, value in FORGED.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    env = env_for(files, "production", **FORGED)
    with pytest.raises(GovernanceUnavailable, match="not answering"):
        current_identity(load_settings(env=env))  # a socket path nobody listens on
    with pytest.raises(GovernanceUnavailable, match="governance_socket' is empty"):
        current_identity(load_settings(env={**env, "WORKBENCH_GOVERNANCE_SOCKET": ""}))


def test_production_identity_comes_from_the_service_whatever_the_process_says(files, service, monkeypatch):
    import workbench.identity as identity

    env = env_for(files, "production", **FORGED)
    service(env)
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "forged")
    monkeypatch.setitem(identity._hub_models, ("http://127.0.0.1:9/hub/api", "forged"), {"name": "mallory"})
    me = current_identity(load_settings(env=env))
    # this process runs as the service's own account: the service identity, with the groups the service's
    # settings give it, not the ones this process's WORKBENCH_GROUPS claims
    assert (me.user, me.groups, me.source, me.verified) == (ME, ("data-stewards",), "service", True)


def test_the_service_refuses_a_users_file_others_may_write(files):
    from workbench.governance.service import GovernanceService

    (files / "etc" / "users.yaml").chmod(0o666)
    with pytest.raises(ConfigError, match="writable by nobody else"):
        GovernanceService(load_settings(env=env_for(files, "production")))


def test_the_local_profile_labels_every_identity_unverified(files, monkeypatch):
    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"kind": "user", "name": "ada", "groups": ["data-scientists"]}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    hub = http.server.HTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{hub.server_port}/hub/api")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
        settings = load_settings(env=env_for(files, "local", WORKBENCH_GOVERNANCE_SOCKET=""))
        seen = current_identity(settings)
        assert (seen.user, seen.groups, seen.source, seen.verified) == (
            "ada",
            ("data-scientists",),
            "local-unverified",
            False,
        )
    finally:
        hub.shutdown()
        hub.server_close()
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    assert current_identity(settings).source == "local-unverified"


def test_a_local_service_records_what_the_reader_claims_labelled_unverified(files, service):
    from workbench.data.audit import query
    from workbench.data.decision import decide_read
    from workbench.errors import AccessDenied

    env = env_for(files, "local", WORKBENCH_USER="ada", WORKBENCH_GROUPS="stakeholders")
    settings = service(env)
    decision = decide_read(settings, "flights", None, None, "local via service")
    assert decision.outcome == "denied" and decision.identity.user == "ada"
    with pytest.raises(AccessDenied):
        from workbench.data import load

        load("flights", settings=settings)
    records = query(settings).records
    assert [(r["user"], r["source"], r["writer"], r["outcome"]) for r in records] == [
        ("ada", "local-unverified", "governance-service", "denied")
    ] * 2
