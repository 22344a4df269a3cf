"""The enforced boundary, with real system users: `workbench data publish` writes the governed views
and sets owner, group, mode and ACLs; then a masked user reads the masked view through the data API
but the filesystem refuses them the raw parquet, while a steward reads both.

Needs root (to create two throw-away users and groups, removed afterwards); CI runs as root. Each
user runs its own Python and JVM through `runuser`, with HOME, TMPDIR and Spark's scratch folders
in a folder of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.root]

if os.geteuid() != 0:
    pytest.skip("needs root: creates throw-away system users and groups (CI runs as root)", allow_module_level=True)
if not all(shutil.which(tool) for tool in ("useradd", "userdel", "groupadd", "groupdel", "runuser")):
    pytest.skip(
        "needs useradd, userdel, groupadd, groupdel and runuser (package passwd / util-linux)", allow_module_level=True
    )


def _others_can_read(path: Path) -> bool:
    """Every folder up to `path` is searchable by others and `path` readable: the throw-away users run
    their Python from this checkout and its .venv."""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents] if p.is_dir()) and bool(
        path.stat().st_mode & 0o004
    )


_unreadable = [
    p
    for p in (REPO / "workbench" / "__init__.py", Path(sysconfig.get_paths()["purelib"]) / "pyspark" / "__init__.py")
    if not _others_can_read(p)
]
if _unreadable:
    pytest.skip(
        f"other users cannot read {_unreadable[0]} (a folder above it lacks o+x, e.g. `mktemp -d` makes 0700 "
        "folders); the throw-away users run Python from this checkout. Clone into a folder others can enter "
        "(chmod o+x) to run this test.",
        allow_module_level=True,
    )

SALT = "boundary-test-salt"
USER_TIMEOUT = 420  # seconds for one user's Python + JVM; generous: the machine is shared

USER_SCRIPT = r"""
import json, os, sys
from workbench.config import load_settings
from workbench.spark import get_spark
import workbench.data as data
from workbench.data.publish import current_version_uri
from workbench.errors import AccessDenied

s = load_settings()
spark = get_spark("governance-boundary", s)
raw = s.lake + "/raw/planes"
out = {}
print("STEP spark up", flush=True)
df = data.load("planes", purpose="boundary test")
out["api_rows"] = df.count()
out["api_tailnum"] = df.where("seats = 55").orderBy("tailnum").first().tailnum
def attempt(fn):
    try:
        fn()
        return "ok"
    except PermissionError:
        return "denied"
    except Exception as exc:
        return "denied" if "Permission denied" in str(exc) else f"error {exc.__class__.__name__}: {str(exc)[:300]}"
print("STEP api read", flush=True)
out["spark_raw"] = attempt(lambda: spark.read.parquet(raw).count())
out["open_raw"] = attempt(lambda: os.listdir(raw[len("file://"):]))
out["governed_view"] = attempt(lambda: spark.read.parquet(current_version_uri(s, "planes", "masked", spark)).count())
print("STEP direct reads", flush=True)
# Claiming a group one is not in changes what the data API asks for, not what the filesystem allows.
try:
    data.load("planes", settings=s.with_overrides(groups=(sys.argv[1],))).count()
    out["claimed_full"] = "ok"
except AccessDenied:
    out["claimed_full"] = "denied"
spark.stop()
print("RESULT " + json.dumps(out))
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def world(spark):
    """A temporary lake (planes only), two users in two groups, and the governed views published with permissions."""
    tag = "wbg" + uuid.uuid4().hex[:5]
    sci, stew = f"{tag}sci", f"{tag}stew"
    root = Path(tempfile.mkdtemp(prefix="wb-boundary-"))
    root.chmod(0o755)
    created: list[tuple[str, str]] = []
    try:
        for name in (sci, stew):
            sh("groupadd", name)
            created.append(("groupdel", name))
            sh("useradd", "--no-create-home", "--gid", name, "--shell", "/usr/sbin/nologin", name)
            created.insert(0, ("userdel", name))
            home = root / f"home-{name}"
            (home / "tmp").mkdir(parents=True)
            shutil.chown(home, name, name)
            shutil.chown(home / "tmp", name, name)
            home.chmod(0o700)
        lake = root / "lake"
        shutil.copytree(REPO / "lake" / "raw" / "planes", lake / "raw" / "planes")
        committed = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
        catalog = {
            "version": 1,
            "grants": {stew: "full", sci: "masked"},
            "datasets": {"planes": committed["datasets"]["planes"]},
        }
        (root / "catalog.yaml").write_text(yaml.safe_dump(catalog))
        (root / "catalog.yaml").chmod(0o644)
        (root / "mask.key").write_text(uuid.uuid4().hex + uuid.uuid4().hex)  # the service's HMAC key (issue 14)
        (root / "mask.key").chmod(0o600)  # root's alone: the users below never read it
        env = {
            "WORKBENCH_HOME": str(root),
            "WORKBENCH_LAKE_ROOT": str(lake),
            "WORKBENCH_CATALOG_PATH": str(root / "catalog.yaml"),
            "WORKBENCH_PROFILE": "production",
            "WORKBENCH_MASK_SALT": SALT,
            "WORKBENCH_MASK_KEY_FILE": str(root / "mask.key"),
            "WORKBENCH_SERVICE_USER": "root",
        }
        from workbench.config import load_settings
        from workbench.data import publish

        service = load_settings(env={**env, "WORKBENCH_GROUPS": stew})
        views = publish(service, spark, permissions=True, progress=lambda m: None)
        yield dict(root=root, lake=lake, env=env, sci=sci, stew=stew, views=views, settings=service)
    finally:
        for command, name in created:
            for _ in range(10):  # userdel refuses while a process of the user is still exiting
                done = subprocess.run([command, name], capture_output=True, timeout=60)
                if done.returncode in (0, 6):  # 6: no such user/group (already gone)
                    break
                time.sleep(1)
        shutil.rmtree(root, ignore_errors=True)


def user_python(user: str) -> list[str]:
    """An interpreter `user` may execute: this one, or the system's Python of the same version with this
    environment's packages on the path (when this one lives in a folder others cannot enter, e.g. /root/.pyenv)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(f"python{version}"), f"/usr/bin/python{version}"):
        if not candidate:
            continue
        probe = subprocess.run(
            ["runuser", "-u", user, "--", candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return [candidate, "-s"]
    pytest.skip(
        f"no Python {version} that a system user may execute (this one, {sys.executable}, is in a folder they cannot enter)"
    )


def run_as(world, user: str, claim: str) -> dict:
    from workbench.spark import ensure_java

    home = world["root"] / f"home-{user}"
    env = {
        **world["env"],
        "WORKBENCH_USER": user,
        "WORKBENCH_GROUPS": user,
        "WORKBENCH_SPARK_MASTER": "local[1]",
        "WORKBENCH_SPARK_SHUFFLE_PARTITIONS": "2",
        "WORKBENCH_SPARK_DRIVER_MEMORY": "512m",
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "SPARK_LOCAL_DIRS": str(home / "tmp"),
        "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={home / 'tmp'}",
        "JAVA_HOME": ensure_java(),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    command = [
        "runuser",
        "-u",
        user,
        "--",
        "env",
        "-i",
        *(f"{k}={v}" for k, v in env.items()),
        *user_python(user),
        "-c",
        USER_SCRIPT,
        claim,
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=USER_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session we started: runuser, Python and its JVM
        stdout, stderr = proc.communicate()
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{user}: exit {proc.returncode}\n{stdout[-2000:]}\n{stderr[-4000:]}"
    return json.loads(lines[0][len("RESULT ") :])


def test_files_enforce_what_the_data_api_promises(world):
    raw = world["lake"] / "raw" / "planes"
    assert (raw.stat().st_mode & 0o777) == 0o750 and raw.group() == world["stew"]
    with ThreadPoolExecutor(2) as pool:  # one JVM per user, started side by side
        masked_f = pool.submit(run_as, world, world["sci"], world["stew"])
        steward_f = pool.submit(run_as, world, world["stew"], world["stew"])
        masked, steward = masked_f.result(), steward_f.result()

    # the masked user: the governed view through the API, hashed identifiers, and no way to the raw files
    assert masked["api_rows"] == steward["api_rows"] == 3322
    assert len(masked["api_tailnum"]) == 64 and masked["api_tailnum"] != steward["api_tailnum"]
    assert masked["spark_raw"] == "denied" and masked["open_raw"] == "denied"
    assert masked["governed_view"] == "ok"
    assert masked["claimed_full"] == "denied"  # claiming the stewards' group does not open the raw files
    # the steward reads the raw data (through the API and directly) and the governed view
    assert steward["api_tailnum"].startswith("N")
    assert steward["spark_raw"] == steward["open_raw"] == steward["governed_view"] == "ok"
    assert steward["claimed_full"] == "ok"

    # both users' reads landed in the one shared audit log, with what the filesystem refused
    from workbench.data.audit import query

    records = query(world["settings"], dataset="planes").records
    seen = {(r["user"], r["level"], r["outcome"]) for r in records if r["purpose"] != "publish"}
    assert (world["sci"], "masked", "allowed") in seen and (world["stew"], "full", "allowed") in seen
    assert (world["sci"], "full", "denied") in seen
