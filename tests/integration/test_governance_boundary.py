"""The enforced boundary, with real system users: `workbench data publish` writes the governed views
and sets owner, group, mode and ACLs; then a masked user reads the masked view through the data API
but the filesystem refuses them the raw parquet, while a steward reads both. Who each user is comes
from the governance service (the socket's peer uid and the users file), not from the variables or
settings they pass; a read the decision allows but the filesystem refuses is AccessDenied, recorded.

Needs root (to create two throw-away users and groups, removed afterwards); CI runs as root. Each
user runs its own Python and JVM through `runuser`, with HOME, TMPDIR and Spark's scratch folders
in a folder of its own. The governance service runs in this process, as root (the service account here).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.systemusers import Accounts, run_as, skip_unless_root_with_tools, user_env

pytestmark = [pytest.mark.integration, pytest.mark.root]
skip_unless_root_with_tools()

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
# Claiming a group one is not in changes nothing: the service decides from the OS account.
claimed = data.load("planes", settings=s.with_overrides(groups=(sys.argv[1],), user=sys.argv[1]))
out["claimed_full"] = "hashed" if len(claimed.where("seats = 55").orderBy("tailnum").first().tailnum) == 64 else "raw"
# A grant the filesystem does not (yet) honour: AccessDenied by name, never a raw Py4JJavaError.
try:
    data.load("planes_copy", purpose="refused read").count()
    out["refused"] = "ok"
except AccessDenied as exc:
    out["refused"] = "AccessDenied: " + str(exc)
except Exception as exc:
    out["refused"] = f"error {exc.__class__.__name__}: {str(exc)[:300]}"
spark.stop()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def world(spark):
    """A temporary lake (planes, and a copy the filesystem has not opened yet), two users in two groups, the
    governance service, and the governed views published with permissions."""
    tag = "wbg" + uuid.uuid4().hex[:5]
    sci, stew = f"{tag}sci", f"{tag}stew"
    root = Path(tempfile.mkdtemp(prefix="wb-boundary-"))
    root.chmod(0o755)
    accounts = Accounts(root)
    server = None
    try:
        for name in (sci, stew):
            accounts.user(name)
        lake = root / "lake"
        shutil.copytree(REPO / "lake" / "raw" / "planes", lake / "raw" / "planes")
        shutil.copytree(REPO / "lake" / "raw" / "planes", lake / "raw" / "planes_copy")
        (lake / "raw" / "planes_copy").chmod(0o700)  # granted in the catalog, not yet published with permissions
        committed = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
        planes = committed["datasets"]["planes"]
        catalog = {
            "version": 1,
            "grants": {stew: "full", sci: "masked"},
            "datasets": {
                "planes": planes,
                "planes_copy": {**planes, "uri": "{lake}/raw/planes_copy", "grants": {sci: "full"}},
            },
        }
        (root / "catalog.yaml").write_text(yaml.safe_dump(catalog))
        (root / "catalog.yaml").chmod(0o644)
        (root / "mask.key").write_text(uuid.uuid4().hex + uuid.uuid4().hex)  # the service's HMAC key (issue 14)
        (root / "mask.key").chmod(0o600)  # root's alone: the users below never read it
        groups = {g: {} for g in ("data-scientists", "data-stewards", "stakeholders", "admins")}
        users = {"groups": {**groups, sci: {}, stew: {}}, "users": {sci: [sci], stew: [stew]}}
        (root / "users.yaml").write_text(yaml.safe_dump(users))
        (root / "users.yaml").chmod(0o644)
        (root / "run").mkdir(mode=0o755)
        env = {
            "WORKBENCH_HOME": str(root),
            "WORKBENCH_LAKE_ROOT": str(lake),
            "WORKBENCH_CATALOG_PATH": str(root / "catalog.yaml"),
            "WORKBENCH_HUB_USERS_FILE": str(root / "users.yaml"),
            "WORKBENCH_GOVERNANCE_SOCKET": str(root / "run" / "governance.sock"),
            "WORKBENCH_PROFILE": "production",
            "WORKBENCH_MASK_SALT": SALT,
            "WORKBENCH_MASK_KEY_FILE": str(root / "mask.key"),
            "WORKBENCH_SERVICE_USER": "root",
            "WORKBENCH_SERVICE_GROUPS": stew,
        }
        from workbench.config import load_settings
        from workbench.data import publish
        from workbench.governance.service import GovernanceService, bind

        service = load_settings(env=env)
        server = bind(service)
        server.service = GovernanceService(service)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        views = publish(service, spark, datasets=["planes"], permissions=True, progress=lambda m: None)
        yield dict(root=root, lake=lake, env=env, sci=sci, stew=stew, views=views, settings=service)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        accounts.remove()
        shutil.rmtree(root, ignore_errors=True)


def run_user(world, user: str, claim: str) -> dict:
    from workbench.spark import ensure_java

    home = world["root"] / f"home-{user}"
    env = user_env(
        home,
        {
            **world["env"],
            "WORKBENCH_USER": world["stew"],  # claims: ignored, the service knows who is asking
            "WORKBENCH_GROUPS": world["stew"],
            "WORKBENCH_SPARK_MASTER": "local[1]",
            "WORKBENCH_SPARK_SHUFFLE_PARTITIONS": "2",
            "WORKBENCH_SPARK_DRIVER_MEMORY": "512m",
            "SPARK_LOCAL_DIRS": str(home / "tmp"),
            "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={home / 'tmp'}",
            "JAVA_HOME": ensure_java(),
            "SPARK_LOCAL_IP": "127.0.0.1",
        },
    )
    done = run_as(user, env, ["-c", USER_SCRIPT, claim], home, USER_TIMEOUT)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (
        f"{user}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    return json.loads(lines[0][len("RESULT ") :])


def test_files_enforce_what_the_data_api_promises(world):
    raw = world["lake"] / "raw" / "planes"
    assert (raw.stat().st_mode & 0o777) == 0o750 and raw.group() == world["stew"]
    with ThreadPoolExecutor(2) as pool:  # one JVM per user, started side by side
        masked_f = pool.submit(run_user, world, world["sci"], world["stew"])
        steward_f = pool.submit(run_user, world, world["stew"], world["stew"])
        masked, steward = masked_f.result(), steward_f.result()

    # the masked user: the governed view through the API, hashed identifiers, and no way to the raw files
    assert masked["api_rows"] == steward["api_rows"] == 3322
    assert len(masked["api_tailnum"]) == 64 and masked["api_tailnum"] != steward["api_tailnum"]
    assert masked["spark_raw"] == "denied" and masked["open_raw"] == "denied"
    assert masked["governed_view"] == "ok"
    assert masked["claimed_full"] == "hashed"  # claiming the stewards' group (and name) changes nothing
    # the steward reads the raw data (through the API and directly) and the governed view
    assert steward["api_tailnum"].startswith("N")
    assert steward["spark_raw"] == steward["open_raw"] == steward["governed_view"] == "ok"
    assert steward["claimed_full"] == "raw"
    # the catalog grants the masked user planes_copy in full, but its files are not theirs to read yet
    assert masked["refused"].startswith("AccessDenied: The filesystem refused")

    # every read landed in the service's audit log under the reader's OS account, refusals included
    from workbench.data.audit import query, verify

    records = query(world["settings"]).records
    seen = {
        (r["user"], r["dataset"], r["level"], r["outcome"], r["reason"]) for r in records if r["purpose"] != "publish"
    }
    assert (world["sci"], "planes", "masked", "allowed", None) in seen
    assert (world["stew"], "planes", "full", "allowed", None) in seen
    assert (world["sci"], "planes_copy", "full", "denied", "filesystem refused") in seen
    assert all(r["source"] in ("os-account", "service") and r["writer"] == "governance-service" for r in records)
    assert verify(world["settings"]).ok
