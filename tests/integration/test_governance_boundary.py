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
import time
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
        if "Permission denied" in str(exc):
            return "denied"
        if "PATH_NOT_FOUND" in str(exc):  # Hadoop's local filesystem: a path below a folder it may not enter
            return "hidden"
        return f"error {exc.__class__.__name__}: {str(exc)[:300]}"
print("STEP api read", flush=True)
out["spark_raw"] = attempt(lambda: spark.read.parquet(raw).count())
out["open_raw"] = attempt(lambda: os.listdir(raw[len("file://"):]))
out["governed_view"] = attempt(lambda: spark.read.parquet(sys.argv[2]).count())  # the view's newest version
out["governed_listing"] = attempt(lambda: current_version_uri(s, "planes", "masked", spark))
# the folder the service vended for the read above: a re-read of that audited grant; another user's is refused
out["vended"] = sorted({f.rsplit("/", 1)[0] for f in df.inputFiles()})
if out["vended"] and "/reads/" in out["vended"][0]:
    out["own_vended"] = attempt(lambda: spark.read.parquet(out["vended"][0]).count())
out["other_vended"] = attempt(lambda: spark.read.parquet(sys.argv[3]).count()) if sys.argv[3] else "none"
out["other_vended_ls"] = attempt(lambda: os.listdir(sys.argv[3][len("file://"):])) if sys.argv[3] else "none"
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
# a folder Spark may list but one part file it may not read: refused (and recorded) by load(), not later by count()
try:
    data.load("planes_partial", purpose="partly refused read").count()
    out["partial"] = "ok"
except AccessDenied as exc:
    out["partial"] = "AccessDenied: " + str(exc)
except Exception as exc:
    out["partial"] = f"error {exc.__class__.__name__}: {str(exc)[:300]}"
spark.stop()
print("RESULT " + json.dumps(out))
"""


VEND_SCRIPT = r"""
import json, os, sys
from workbench.config import load_settings
from workbench.data.decision import decide_read
def attempt(fn):
    try:
        fn()
        return "ok"
    except PermissionError:
        return "denied"
d = decide_read(load_settings(), "planes", None, None, "vend only")
out = {"seq": d.seq, "location": d.location, "level": d.grant.level}
out["own_ls"] = attempt(lambda: os.listdir(d.location[len("file://"):]))
out["view_ls"] = attempt(lambda: os.listdir(sys.argv[1]))
out["view_open"] = attempt(lambda: open(os.path.join(sys.argv[1], sys.argv[2]), "rb").close())
out["view_link"] = attempt(lambda: os.link(os.path.join(d.location[len("file://"):], sys.argv[2]), os.path.join(os.environ["HOME"], "kept")))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def world(spark):
    """A temporary lake (planes, and a copy the filesystem has not opened yet), two users in two groups, the
    governance service, and the governed views published with permissions."""
    tag = "wbg" + uuid.uuid4().hex[:5]
    sci, stew, sci2 = f"{tag}sci", f"{tag}stew", f"{tag}sc2"
    root = Path(tempfile.mkdtemp(prefix="wb-boundary-"))
    root.chmod(0o755)
    accounts = Accounts(root)
    server = None
    try:
        for name in (sci, stew, sci2):
            accounts.user(name)
        lake = root / "lake"
        shutil.copytree(REPO / "lake" / "raw" / "planes", lake / "raw" / "planes")
        shutil.copytree(REPO / "lake" / "raw" / "planes", lake / "raw" / "planes_copy")
        (lake / "raw" / "planes_copy").chmod(0o700)  # granted in the catalog, not yet published with permissions
        partial = lake / "raw" / "planes_partial"
        shutil.copytree(REPO / "lake" / "raw" / "planes", partial)
        partial.chmod(0o755)
        for path in partial.iterdir():
            path.chmod(0o644)
        sorted(partial.glob("part-*"))[-1].chmod(0o600)  # the folder lists, one part file is root's alone
        committed = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
        planes = committed["datasets"]["planes"]
        catalog = {
            "version": 1,
            "grants": {stew: "full", sci: "masked", sci2: "masked"},
            "datasets": {
                "planes": planes,
                "planes_copy": {**planes, "uri": "{lake}/raw/planes_copy", "grants": {sci: "full"}},
                "planes_partial": {**planes, "uri": "{lake}/raw/planes_partial", "grants": {sci: "full"}},
            },
        }
        (root / "catalog.yaml").write_text(yaml.safe_dump(catalog))
        (root / "catalog.yaml").chmod(0o644)
        (root / "mask.key").write_text(uuid.uuid4().hex + uuid.uuid4().hex)  # the service's HMAC key (issue 14)
        (root / "mask.key").chmod(0o600)  # root's alone: the users below never read it
        groups = {g: {} for g in ("data-scientists", "data-stewards", "stakeholders", "admins")}
        users = {"groups": {**groups, sci: {}, stew: {}, sci2: {}}, "users": {sci: [sci], stew: [stew], sci2: [sci2]}}
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
        yield dict(
            root=root, lake=lake, env=env, sci=sci, stew=stew, sci2=sci2, views=views, settings=service, server=server
        )
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        accounts.remove()
        shutil.rmtree(root, ignore_errors=True)


def run_vend(world, user: str, view: Path, part: str) -> dict:
    home = world["root"] / f"home-{user}"
    done = run_as(user, user_env(home, world["env"]), ["-c", VEND_SCRIPT, str(view), part], home, USER_TIMEOUT)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (
        f"{user}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    return json.loads(lines[0][len("RESULT ") :])


def run_user(world, user: str, claim: str, view: Path, other_vended: str) -> dict:
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
    done = run_as(user, env, ["-c", USER_SCRIPT, claim, str(view), other_vended], home, USER_TIMEOUT)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (
        f"{user}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    return json.loads(lines[0][len("RESULT ") :])


def test_files_enforce_what_the_data_api_promises(world):
    raw = world["lake"] / "raw" / "planes"
    assert (raw.stat().st_mode & 0o777) == 0o750 and raw.group() == world["stew"]
    from workbench.data.publish import current_version_uri
    from workbench.storage import local_path

    view = local_path(current_version_uri(world["settings"], "planes", "masked"))
    part = sorted(p.name for p in view.glob("part-*"))[0]
    assert (view.stat().st_mode & 0o777) == 0o700  # the view's folders: the service account's alone
    other = run_vend(world, world["sci2"], view, part)  # another masked reader, no JVM: one vended read
    with ThreadPoolExecutor(2) as pool:  # one JVM per user, started side by side
        masked_f = pool.submit(run_user, world, world["sci"], world["stew"], view, other["location"])
        steward_f = pool.submit(run_user, world, world["stew"], world["stew"], view, "")
        masked, steward = masked_f.result(), steward_f.result()

    # the masked user: the governed view through the API, hashed identifiers, and no way to the raw files
    assert masked["api_rows"] == steward["api_rows"] == 3322
    assert len(masked["api_tailnum"]) == 64 and masked["api_tailnum"] != steward["api_tailnum"]
    assert masked["spark_raw"] == "denied" and masked["open_raw"] == "denied"
    assert masked["claimed_full"] == "hashed"  # claiming the stewards' group (and name) changes nothing
    # the view is reached only through a folder vended for one read: a plain read of its files is refused
    assert masked["governed_view"] in ("denied", "hidden") and masked["governed_listing"] == "denied"
    assert other["view_ls"] == other["view_open"] == "denied" and other["own_ls"] == "ok"
    assert other["view_link"] == "denied"  # nor can a reader keep a link of its own past the folder's expiry
    reads = local_path(world["settings"].reads_uri)
    [vended] = masked["vended"]
    assert local_path(vended).parent == reads / world["sci"] and masked["own_vended"] == "ok"
    # sci2's folder, though sci may read the files in it
    assert masked["other_vended"] in ("denied", "hidden") and masked["other_vended_ls"] == "denied"
    assert local_path(other["location"]).parent == reads / world["sci2"]
    # the steward reads the raw data (through the API and directly); the view's files are not on a path they may take
    assert steward["api_tailnum"].startswith("N")
    assert steward["spark_raw"] == steward["open_raw"] == "ok" and steward["governed_view"] in ("denied", "hidden")
    assert steward["claimed_full"] == "raw"
    # the catalog grants the masked user planes_copy in full, but its files are not theirs to read yet
    assert masked["refused"].startswith("AccessDenied: The filesystem refused")
    # one unreadable part file in a listable folder: refused by load() and recorded, not a raw error at count()
    assert masked["partial"].startswith("AccessDenied: The filesystem refused") and "first refused" in masked["partial"]

    # every read landed in the service's audit log under the reader's OS account, refusals included
    from workbench.data.audit import query, verify

    records = query(world["settings"]).records
    seen = {
        (r["user"], r["dataset"], r["level"], r["outcome"], r["reason"]) for r in records if r["purpose"] != "publish"
    }
    assert (world["sci"], "planes", "masked", "allowed", None) in seen
    assert (world["stew"], "planes", "full", "allowed", None) in seen
    assert (world["sci"], "planes_copy", "full", "denied", "filesystem refused") in seen
    assert (world["sci"], "planes_partial", "full", "denied", "filesystem refused") in seen
    assert all(r["source"] in ("os-account", "service") and r["writer"] == "governance-service" for r in records)
    assert verify(world["settings"]).ok
    # each vended folder is named by the seq of the audited decision it serves (then a random part)
    by_seq = {r["seq"]: r for r in records}
    mine = by_seq[int(vended.rsplit("/", 1)[1].split("-")[0])]
    assert (mine["user"], mine["dataset"], mine["level"], mine["outcome"], mine["purpose"]) == (
        world["sci"],
        "planes",
        "masked",
        "allowed",
        "boundary test",
    )
    assert by_seq[other["seq"]]["user"] == world["sci2"] and other["location"].rsplit("/", 1)[1].startswith(
        f"{other['seq']}-"
    )

    # expiry: the service sweeps folders older than governed_read_ttl_hours; the view's files stay
    folders = [local_path(vended), local_path(other["location"])]
    service = world["server"].service
    assert service.reads.sweep() == []  # fresh folders stay
    removed = service.reads.sweep(now=time.time() + world["settings"].governed_read_ttl_hours * 3600 + 60)
    assert set(folders) <= set(removed) and not any(f.exists() for f in folders)
    assert (view / part).exists() and (view / part).stat().st_nlink == 1
