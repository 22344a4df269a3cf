"""Identity and audit in production, tried as an attacker would (issue 14's "Identity" and "Audit" findings).

A governance service runs as a throw-away data service account; an attacker (a data scientist) and a
victim (a steward) are real system users. The attacker forges every identity source the kernel
controls (WORKBENCH_USER/GROUPS, WORKBENCH_JOB_IDENTITY, a fake hub behind JUPYTERHUB_API_URL, a
deleted token, `identity._hub_models`, a fake governance socket, raw claims on the real socket) and
writes wherever they can in the audit store (append, pwrite, truncate, unlink, FIFO, symlink, a
pre-created next day file). Each attempt must fail, by name, and the audit log must hold the
attacker's real name, with a hash chain `--verify` finds intact.

Needs root (CI runs as root). No Spark: every read here is decided before a JVM would start.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.systemusers import Accounts, as_user, run_as, skip_unless_root_with_tools, user_env

pytestmark = [pytest.mark.integration, pytest.mark.root]
skip_unless_root_with_tools()

SCRIPT_TIMEOUT = 120
SALT = "attack-test-salt"

ATTACK = r"""
import errno, http.server, json, os, socket, sys, threading, datetime as dt

# a fake hub that says we are the victim, a steward
class Hub(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"kind": "user", "name": sys.argv[1], "groups": ["data-stewards"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
hub = http.server.HTTPServer(("127.0.0.1", 0), Hub)
threading.Thread(target=hub.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{hub.server_port}/hub/api"
os.environ.update(JUPYTERHUB_API_URL=url, JUPYTERHUB_API_TOKEN="forged", JUPYTERHUB_USER=sys.argv[1])
import workbench.identity as identity
identity._hub_models[(url, "forged")] = {"kind": "user", "name": sys.argv[1], "groups": ["data-stewards"]}

from workbench.config import load_settings
from workbench.identity import current_identity
import workbench.data as data
from workbench.errors import AccessDenied, GovernanceUnavailable

out = {}
s = load_settings()
i = current_identity(s)
out["identity"] = [i.user, list(i.groups), i.source]
del os.environ["JUPYTERHUB_API_TOKEN"]
os.environ["WORKBENCH_JOB_IDENTITY"] = "service"
i = current_identity(load_settings())
out["identity_without_token"] = [i.user, list(i.groups), i.source]
try:
    data.load("planes", purpose="forged read", settings=load_settings(groups="data-stewards", user=sys.argv[1]))
    out["load"] = "ok"
except AccessDenied as exc:
    out["load"] = "AccessDenied: " + str(exc)

# raw requests on the real socket, claiming to be the victim
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(s.governance_socket)
reader = conn.makefile("rb")
def ask(request):
    conn.sendall(json.dumps(request).encode() + b"\n")
    return json.loads(reader.readline())
out["raw_record"] = ask({"op": "record", "fields": {"user": sys.argv[1], "groups": ["data-stewards"], "source": "service",
                        "dataset": "planes", "level": "full", "outcome": "allowed", "purpose": "forged record"}})
out["raw_publish"] = ask({"op": "record", "fields": {"dataset": "planes", "level": "full", "view": "raw",
                         "outcome": "allowed", "purpose": "publish"}})
out["raw_decide"] = ask({"op": "decide", "dataset": "planes", "purpose": "forged decide",
                        "claim": {"user": sys.argv[1], "groups": ["data-stewards"]}})

# the audit store: everything a user could try on the day file and the next one
folder = s.audit_dir
today = os.path.join(folder, f"{dt.datetime.now(dt.UTC):%Y-%m-%d}.jsonl")
tomorrow = os.path.join(folder, f"{dt.datetime.now(dt.UTC) + dt.timedelta(days=1):%Y-%m-%d}.jsonl")
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
out["store"] = {
    "list": attempt(lambda: os.listdir(folder)),
    "read": attempt(lambda: open(today, "rb").read()),
    "append": attempt(lambda: open(today, "ab").write(b'{"user": "someone-else", "level": "full"}\n')),
    "pwrite": attempt(lambda: os.pwrite(os.open(today, os.O_WRONLY), b"x", 0)),
    "truncate": attempt(lambda: os.truncate(today, 0)),
    "unlink": attempt(lambda: os.unlink(today)),
    "fifo": attempt(lambda: os.mkfifo(tomorrow)),
    "symlink": attempt(lambda: os.symlink("/tmp/attacker-file", tomorrow)),
    "precreate": attempt(lambda: os.close(os.open(tomorrow, os.O_CREAT | os.O_WRONLY, 0o600))),
    "rename": attempt(lambda: os.rename(folder, folder + ".old")),
}

# a governance service of our own, that allows everything
fake = os.path.join(os.environ["HOME"], "fake.sock")
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(fake)
server.listen(1)
def answer():
    c, _ = server.accept()
    c.makefile("rb").readline()
    c.sendall(json.dumps({"identity": {"user": sys.argv[1], "groups": ["data-stewards"], "source": "os-account"},
                          "dataset": "planes", "outcome": "allowed", "grant": {"level": "full", "group": "data-stewards"},
                          "seq": 1}).encode() + b"\n")
threading.Thread(target=answer, daemon=True).start()
try:
    data.load("planes", settings=load_settings(governance_socket=fake))
    out["fake_service"] = "ok"
except GovernanceUnavailable as exc:
    out["fake_service"] = "GovernanceUnavailable: " + str(exc)
print("RESULT " + json.dumps(out))
"""

READ = r"""
import json
import workbench.data as data
from workbench.errors import WorkbenchError
try:
    data.load("planes", purpose="while the service is down")
    print("RESULT " + json.dumps({"load": "ok"}))
except WorkbenchError as exc:
    print("RESULT " + json.dumps({"load": exc.__class__.__name__ + ": " + str(exc)}))
"""


@pytest.fixture(scope="module")
def world():
    tag = "wba" + uuid.uuid4().hex[:5]
    svc, atk, vic = f"{tag}svc", f"{tag}atk", f"{tag}vic"
    root = Path(tempfile.mkdtemp(prefix="wb-attacks-"))
    root.chmod(0o755)
    accounts = Accounts(root)
    try:
        for name in (svc, atk, vic):
            accounts.user(name)
        etc = root / "etc"
        etc.mkdir(mode=0o755)
        users = {
            "groups": {
                "data-scientists": {"server": True},
                "data-stewards": {"server": True},
                "stakeholders": {},
                "admins": {"admin": True},
            },
            "users": {atk: ["data-scientists"], vic: ["data-stewards"]},
        }
        (etc / "users.yaml").write_text(yaml.safe_dump(users))
        committed = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
        catalog = {
            "version": 1,
            "grants": {"data-stewards": "full"},
            "datasets": {"planes": committed["datasets"]["planes"]},
        }
        (etc / "catalog.yaml").write_text(yaml.safe_dump(catalog))
        for f in etc.iterdir():
            f.chmod(0o644)
        run = root / "run"
        run.mkdir(mode=0o755)
        shutil.chown(run, svc, svc)
        audit = root / "audit"
        audit.mkdir(mode=0o700)
        shutil.chown(audit, svc, svc)
        settings_env = {
            "WORKBENCH_HOME": str(root),
            "WORKBENCH_PROFILE": "production",
            "WORKBENCH_LAKE_ROOT": str(root / "lake"),
            "WORKBENCH_CATALOG_PATH": str(etc / "catalog.yaml"),
            "WORKBENCH_HUB_USERS_FILE": str(etc / "users.yaml"),
            "WORKBENCH_AUDIT_DIR": str(audit),
            "WORKBENCH_GOVERNANCE_SOCKET": str(run / "governance.sock"),
            "WORKBENCH_SERVICE_USER": svc,
            "WORKBENCH_SERVICE_GROUPS": "data-stewards",
            "WORKBENCH_MASK_SALT": SALT,
        }
        yield dict(root=root, svc=svc, atk=atk, vic=vic, env=settings_env, audit=audit, etc=etc)
    finally:
        accounts.remove()
        shutil.rmtree(root, ignore_errors=True)


class Service:
    """The governance service as the data service account, in its own session."""

    def __init__(self, world):
        self.world = world
        home = world["root"] / f"home-{world['svc']}"
        env = user_env(home, world["env"])
        self.log = open(world["root"] / "service.log", "a")
        self.proc = subprocess.Popen(
            as_user(world["svc"], env, ["-m", "workbench.governance", "serve"], home),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=home,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        path = self.world["env"]["WORKBENCH_GOVERNANCE_SOCKET"]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, (self.world["root"] / "service.log").read_text()[-3000:]
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(path)
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the governance service did not listen within 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def service(world):
    svc = Service(world)
    try:
        svc.wait_ready()
        yield svc
    finally:
        svc.stop()


def run_script(world, user: str, script: str, *args: str, extra: dict[str, str] | None = None) -> dict:
    home = world["root"] / f"home-{user}"
    env = user_env(home, {**world["env"], **(extra or {})})
    done = run_as(user, env, ["-c", script, *args], home, SCRIPT_TIMEOUT)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (
        f"{user}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    return json.loads(lines[0][len("RESULT ") :])


def service_settings(world):
    from workbench.config import load_settings

    return load_settings(env=world["env"])


@pytest.fixture(scope="module")
def attack(world, service):
    forged = {"WORKBENCH_USER": world["vic"], "WORKBENCH_GROUPS": "data-stewards", "WORKBENCH_JOB_IDENTITY": "service"}
    return run_script(world, world["atk"], ATTACK, world["vic"], extra=forged)


# ---- Identity ----------------------------------------------------------------------------------
def test_no_variable_hub_url_token_or_cache_changes_who_the_attacker_is(world, attack):
    me = [world["atk"], ["data-scientists"], "os-account"]
    assert attack["identity"] == me  # WORKBENCH_USER/GROUPS, a fake hub, a forged _hub_models entry
    assert attack["identity_without_token"] == me  # the token deleted, WORKBENCH_JOB_IDENTITY=service


def test_the_forged_read_is_denied_and_recorded_under_the_real_name(world, attack):
    assert attack["load"].startswith("AccessDenied:") and f"'{world['atk']}'" in attack["load"]
    from workbench.data.audit import query

    records = query(service_settings(world), dataset="planes").records
    forged = [r for r in records if r["purpose"] == "forged read"]
    assert [(r["user"], r["groups"], r["source"], r["outcome"]) for r in forged] == [
        (world["atk"], ["data-scientists"], "os-account", "denied")
    ]
    uid = int(subprocess.run(["id", "-u", world["atk"]], capture_output=True, text=True, check=True).stdout)
    assert forged[0]["uid"] == uid and forged[0]["writer"] == "governance-service"


def test_claims_sent_on_the_socket_are_ignored(world, attack):
    # a reader cannot write a record of its own making (here: someone else's full, allowed read) ...
    assert attack["raw_record"]["error"] == "AccessDenied"
    assert attack["raw_publish"]["error"] == "AccessDenied"  # nor pass one off as a publish: no full access
    # ... and a claimed identity in a decision request is not believed: the decision is the attacker's, denied
    decided = attack["raw_decide"]
    assert decided["outcome"] == "denied" and decided["identity"]["user"] == world["atk"]
    from workbench.data.audit import query

    purposes = {r["purpose"]: r["user"] for r in query(service_settings(world)).records}
    assert "forged record" not in purposes and purposes["forged decide"] == world["atk"]


def test_a_governance_socket_of_ones_own_is_not_trusted(world, attack):
    assert attack["fake_service"].startswith("GovernanceUnavailable:")
    assert "not by the data service account" in attack["fake_service"]


# ---- Audit -------------------------------------------------------------------------------------
def test_users_cannot_write_list_or_plant_anything_in_the_audit_store(attack):
    assert attack["store"] == {
        "list": "EACCES",
        "read": "EACCES",
        "append": "EACCES",
        "pwrite": "EACCES",
        "truncate": "EACCES",
        "unlink": "EACCES",
        "fifo": "EACCES",
        "symlink": "EACCES",
        "precreate": "EACCES",
        "rename": "EACCES",
    }


def test_the_log_after_the_attacks_is_intact_and_owner_only(world, attack, capsys, monkeypatch):
    from workbench.cli import main

    audit = world["audit"]
    files = list(audit.iterdir())
    assert files and all((f.stat().st_mode & 0o777) == 0o600 and f.owner() == world["svc"] for f in files)
    assert (audit.stat().st_mode & 0o777) == 0o700 and audit.owner() == world["svc"]
    for key, value in world["env"].items():
        monkeypatch.setenv(key, value)
    assert main(["data", "audit", "--verify"]) == 0
    assert "intact" in capsys.readouterr().out
    assert main(["data", "audit", "--user", world["atk"]]) == 0
    text = capsys.readouterr().out
    assert "source=os-account" in text and world["vic"] not in text


def test_the_service_refuses_a_users_file_the_attacker_could_edit(world, service, attack):
    users = world["etc"] / "users.yaml"
    original = users.stat()
    shutil.chown(users, world["atk"])
    try:
        from workbench.errors import ConfigError
        from workbench.governance.service import GovernanceService

        with pytest.raises(ConfigError, match="must belong to root"):
            GovernanceService(service_settings(world))
    finally:
        os.chown(users, original.st_uid, original.st_gid)


def test_reads_fail_closed_when_the_service_is_down(world, service, attack):
    service.stop()
    seen = run_script(world, world["vic"], READ)
    assert seen["load"].startswith("GovernanceUnavailable:")
    assert world["env"]["WORKBENCH_GOVERNANCE_SOCKET"] in seen["load"]
    assert "python -m workbench.governance serve" in seen["load"]
    from workbench.data.audit import query

    assert not [r for r in query(service_settings(world)).records if r["purpose"] == "while the service is down"]


def test_verify_as_root_names_a_record_an_administrator_edited(world, attack):
    from workbench.data.audit import verify

    path = world["audit"] / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}.jsonl"
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"forged read", b"honest read", 1))
        problems = verify(service_settings(world)).problems
        assert problems and "the record was edited" in problems[0]
    finally:
        path.write_bytes(original)
