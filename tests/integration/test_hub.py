"""The real hub: JupyterHub + configurable-http-proxy + the reports and MLflow services, started once
for this module by the same launcher as `workbench hub`, on 127.0.0.1 with free ports and temp state.
People log in with their own passwords, as a browser would (form + cookies)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.hubtools import PASSWORD, api_token, client, hub_settings, login, running_hub, xsrf

pytestmark = pytest.mark.integration

USERS = """
groups:
  data-scientists: {server: true, services: [reports, mlflow], limits: {memory: 4G, spark_driver_memory: 1g}}
  data-stewards: {server: true, services: [reports, mlflow]}
  stakeholders: {server: false, services: [reports]}
  admins: {admin: true, server: true, services: [reports, mlflow]}
users:
  admin: [admins]
  ada: [data-scientists]
  ben: [data-scientists]
  sam: [stakeholders]
"""  # nora has an account but is in no group
REPORT_TITLE = "Flight delay reports"
DRIFT_TITLE = "Drift monitor: June vs January"
SERVER_READY_TIMEOUT = 240.0
MLFLOW_READY_TIMEOUT = 300.0


def write_reports(folder: Path) -> None:
    """A reports site as the jobs runner lays it out: an index and one run's report with an inline chart."""
    run = folder / "runs" / "04_drift_monitor" / "20130601T000000Z"
    run.mkdir(parents=True)
    (folder / "index.html").write_text(
        f"<!doctype html><html><head><title>{REPORT_TITLE}</title></head><body><h1>{REPORT_TITLE}</h1>"
        f'<a id="latest-drift" href="runs/04_drift_monitor/20130601T000000Z/report.html">{DRIFT_TITLE}</a></body></html>'
    )
    (run / "report.html").write_text(
        f"<!doctype html><html><head><title>{DRIFT_TITLE}</title></head><body><h1>{DRIFT_TITLE}</h1>"
        '<svg id="chart" width="200" height="100"><rect x="10" y="20" width="30" height="80"/></svg></body></html>'
    )


@pytest.fixture(scope="module")
def hub():
    # Not under pytest's 0700 temp folder: a root hub runs its servers as an unprivileged account, which
    # must be able to pass through to its home in the hub's state folder.
    root = Path(tempfile.mkdtemp(prefix="wb-hub-"))
    root.chmod(0o755)
    try:
        write_reports(root / "reports")
        settings = hub_settings(root, USERS, hub_services=("reports", "mlflow", "idle-culler"))
        with running_hub(settings, root, ["admin", "ada", "ben", "sam", "nora"]) as hub:
            yield hub
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- nobody gets in without logging in ----------------------------------------------------------
@pytest.mark.parametrize("path", ["/hub/home", "/services/reports/", "/services/mlflow/", "/user/ada/lab"])
def test_anonymous_requests_are_sent_to_the_login_page(hub, path):
    r = client(hub).get(path)
    assert r.url.path == "/hub/login" and r.status_code == 200


def test_anonymous_api_requests_are_refused(hub):
    c = client(hub)
    assert c.get("/hub/api/users").status_code == 403
    assert c.post("/services/mlflow/ajax-api/2.0/mlflow/experiments/search", json={}).status_code == 403


def test_a_wrong_password_does_not_log_in(hub):
    c = client(hub)
    c.get("/hub/login")
    r = c.post(
        "/hub/login",
        data={"username": "sam", "password": "not-" + PASSWORD, "_xsrf": c.cookies.get("_xsrf", path="/hub/")},
    )
    assert r.url.path == "/hub/login" and "Invalid username or password" in r.text


# ---- from hub start: the users file's people and groups, and admins who only look ---------------
def test_the_users_files_users_and_groups_are_in_the_admin_panel_from_hub_start(hub):
    admin = login(hub, "admin")
    api = httpx.Client(base_url=hub.url, headers={"Authorization": f"token {api_token(admin, 'admin')}"}, timeout=60)
    users = {u["name"]: u for u in api.get("/hub/api/users").json()}
    # ben has not logged in (his first login is in a later test): there already, with his group
    assert users["ben"]["groups"] == ["data-scientists"] and users["sam"]["groups"] == ["stakeholders"]
    assert users["ben"]["last_activity"] is None
    groups = {g["name"]: sorted(g["users"]) for g in api.get("/hub/api/groups").json()}
    assert groups == {
        "admins": ["admin"],
        "data-scientists": ["ada", "ben"],
        "data-stewards": [],
        "stakeholders": ["sam"],
    }


def test_an_admins_login_starts_no_server(hub):
    admin = login(hub, "admin")
    assert admin.landing == "/hub/home"
    home = admin.get(admin.landing)
    assert home.status_code == 200 and 'id="start"' in home.text  # offered, not started
    api = httpx.Client(base_url=hub.url, headers={"Authorization": f"token {api_token(admin, 'admin')}"}, timeout=60)
    assert api.get("/hub/api/users/admin").json()["servers"] == {}


def test_no_server_starts_for_a_stakeholder_even_when_an_admin_asks(hub):
    admin = login(hub, "admin")
    api = httpx.Client(base_url=hub.url, headers={"Authorization": f"token {api_token(admin, 'admin')}"}, timeout=60)
    r = api.post("/hub/api/users/sam/server")
    assert r.status_code >= 400, r.text
    time.sleep(1)
    assert api.get("/hub/api/users/sam").json()["servers"] == {}
    panel = admin.get("/hub/admin")  # and the admin panel does not offer it
    assert 'tr[data-testid="user-row-sam"] .start-button' in panel.text
    assert 'user-row-ada"] .start-button' not in panel.text and 'user-row-admin"]' not in panel.text


@pytest.mark.parametrize("path", ["/user/sam/lab", "/user/sam/tree/notebooks", "/user/ada/lab"])
def test_a_stakeholder_on_a_server_path_is_told_what_they_can_do(hub, path):
    r = login(hub, "sam").get(path)
    assert r.status_code in (403, 404) and 'id="refusal"' in r.text, (r.status_code, r.url)
    assert 'href="/services/reports/"' in r.text
    assert "lots of moons" not in r.text


def test_someone_in_no_group_is_told_they_have_nothing_yet(hub):
    nora = login(hub, "nora")
    assert nora.landing == "/hub/home"
    home = nora.get("/hub/home")
    assert 'id="no-access"' in home.text and 'id="start"' not in home.text


# ---- stakeholders: the reports, nothing else ----------------------------------------------------
def test_a_stakeholder_lands_on_and_reads_the_reports(hub):
    sam = login(hub, "sam")
    assert sam.landing == "/services/reports/"
    r = sam.get("/services/reports/")
    assert r.status_code == 200 and REPORT_TITLE in r.text
    r = sam.get("/services/reports/runs/04_drift_monitor/20130601T000000Z/report.html")
    assert r.status_code == 200 and DRIFT_TITLE in r.text
    assert sam.get("/services/reports/runs/").status_code == 200  # a folder without index: a listing


def test_a_stakeholder_cannot_start_a_server_or_open_mlflow(hub):
    sam = login(hub, "sam")
    assert sam.post("/hub/api/users/sam/server", headers=xsrf(sam)).status_code == 403
    assert sam.post("/hub/api/users/sam/tokens", json={}, headers=xsrf(sam)).status_code == 403
    assert sam.get("/services/mlflow/").status_code == 403
    home = sam.get("/hub/home")  # no "Start My Server" button that would answer 403: the reports instead
    assert home.status_code == 200 and 'id="reports"' in home.text and 'id="start"' not in home.text


def test_a_data_scientists_home_page_offers_their_server(hub):
    home = login(hub, "ada").get("/hub/home")
    assert home.status_code == 200 and 'id="start"' in home.text and 'id="reports"' not in home.text


def test_someone_in_no_group_cannot_read_the_reports(hub):
    nora = login(hub, "nora")
    assert nora.get("/services/reports/").status_code == 403


# ---- data scientists: their own server, the hub's identity inside it ----------------------------
KERNEL_CODE = """
import json, os
os.environ["JUPYTERHUB_USER"] = "admin"          # set by hand: must not change who we are
os.environ["WORKBENCH_GROUPS"] = "admins"
os.environ["WORKBENCH_JOB_IDENTITY"] = "service"
from workbench.identity import current_identity
from workbench.config import load_settings
from workbench.spark import _app_name
i = current_identity()
print(json.dumps({"user": i.user, "groups": list(i.groups), "source": i.source, "app": _app_name(load_settings(), None),
                  "driver_memory": os.environ.get("WORKBENCH_SPARK_DRIVER_MEMORY"),
                  "salt_visible": "WORKBENCH_MASK_SALT" in os.environ, "home": os.environ.get("HOME")}))
"""


@pytest.fixture(scope="module")
def ada_server(hub):
    """ada logs in, takes an API token, starts her server through the REST API; stopped after the module's tests."""
    ada = login(hub, "ada")
    assert ada.landing == "/hub/spawn"  # data scientists land in their own server
    token = api_token(ada, "ada")
    api = httpx.Client(base_url=hub.url, headers={"Authorization": f"token {token}"}, timeout=60)
    r = api.post("/hub/api/users/ada/server")
    assert r.status_code in (201, 202), r.text
    try:
        _wait_server_ready(api, "ada")
        kernel = api.post("/user/ada/api/kernels", json={"name": "python3"})
        assert kernel.status_code == 201, kernel.text
        ws_url = hub.url.replace("http", "ws", 1) + f"user/ada/api/kernels/{kernel.json()['id']}/channels"
        yield lambda code: asyncio.run(_execute(ws_url, token, code))
    finally:
        api.delete("/hub/api/users/ada/server")


def test_a_data_scientists_kernel_gets_the_hubs_identity(hub, ada_server):
    seen = json.loads(ada_server(KERNEL_CODE).strip().splitlines()[-1])
    # the hub's answer, labelled local-unverified: in the local profile the kernel chooses the hub URL it asks
    assert seen["user"] == "ada" and seen["groups"] == ["data-scientists"] and seen["source"] == "local-unverified"
    assert seen["app"] == "workbench-ada"  # the Spark app name carries the hub's user name
    assert seen["driver_memory"] == "1g"  # the group's limit, not the hub default
    assert seen["salt_visible"] is False
    assert seen["home"] == str(Path(hub.settings.hub_state_dir) / "homes" / "ada")

    # nobody else reaches ada's server: not a stakeholder, not another data scientist (the hub's OAuth refuses)
    for other in ("sam", "ben"):
        r = login(hub, other).get("/user/ada/lab")
        assert r.status_code == 403 and r.url.path.startswith("/hub/api/oauth2/authorize"), (other, r.url)


STATE_PROBE = """
import json, os
state = {state!r}
def attempt(fn):
    try:
        fn()
        return "ok"
    except PermissionError:
        return "denied"
print(json.dumps({{"uid": os.getuid(),
                  "secret": attempt(lambda: open(os.path.join(state, "jupyterhub_cookie_secret")).read()),
                  "database": attempt(lambda: open(os.path.join(state, "jupyterhub.sqlite"), "rb").read(16)),
                  "listing": attempt(lambda: os.listdir(state))}}))
"""


def test_a_root_hubs_kernel_runs_unprivileged_and_cannot_read_the_hubs_state(hub, ada_server):
    if os.geteuid() != 0:
        pytest.skip("the hub runs as root only when the tests do (CI)")
    state = str(Path(hub.settings.path("hub_state_dir")))
    seen = json.loads(ada_server(STATE_PROBE.format(state=state)).strip().splitlines()[-1])
    assert seen["uid"] != 0
    assert seen == {"uid": seen["uid"], "secret": "denied", "database": "denied", "listing": "denied"}


GOVERNED_READ = """
import json, os
os.environ["JUPYTERHUB_USER"] = "admin"
os.environ["WORKBENCH_GROUPS"] = "data-stewards"   # full access, if anyone believed it
import workbench.data
tails = [r.tailnum for r in workbench.data.load("planes", columns=["tailnum"], purpose="hub test").limit(5).collect()]
print(json.dumps(tails))
"""


def test_a_data_scientist_reads_the_masked_view_the_hubs_groups_allow(hub, ada_server):
    if importlib.util.find_spec("workbench.data.policy") is None:
        pytest.skip("governance (masks, grants, audit behind workbench.data.load) is not merged in this workbench")
    tails = json.loads(ada_server(GOVERNED_READ).strip().splitlines()[-1])
    assert tails and all(len(t) == 64 and not t.startswith("N") for t in tails)  # salted hashes, not tail numbers
    events = [
        json.loads(line) for f in sorted((hub.root / "audit").glob("*.jsonl")) for line in f.read_text().splitlines()
    ]
    read = [e for e in events if e.get("dataset") == "planes"][-1]
    assert (read["user"], read["groups"], read["source"], read["level"]) == (
        "ada",
        ["data-scientists"],
        "local-unverified",
        "masked",
    )
    if os.geteuid() == 0:  # a root hub: the kernel ran unprivileged and recorded through the hub's governance service
        assert read["writer"] == "governance-service" and read["uid"] != 0


def _wait_server_ready(api: httpx.Client, name: str) -> None:
    end = time.monotonic() + SERVER_READY_TIMEOUT
    while time.monotonic() < end:
        server = api.get(f"/hub/api/users/{name}").json().get("servers", {}).get("")
        if server and server.get("ready"):
            return
        time.sleep(1)
    raise AssertionError(f"{name}'s server was not ready after {SERVER_READY_TIMEOUT:.0f} s")


async def _execute(ws_url: str, token: str, code: str, timeout: float = 300) -> str:
    """Run `code` in a kernel over the Jupyter websocket protocol; return its stdout (raise on error)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    conn.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    out: list[str] = []
    try:
        while True:
            raw = await asyncio.wait_for(conn.read_message(), timeout)
            assert raw is not None, "the kernel's websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
    finally:
        conn.close()


# ---- the MLflow UI ------------------------------------------------------------------------------
def test_a_data_scientist_browses_mlflow_through_the_hub(hub):
    ada = login(hub, "ada")
    end = time.monotonic() + MLFLOW_READY_TIMEOUT
    while (r := ada.get("/services/mlflow/")).status_code == 503 and time.monotonic() < end:
        time.sleep(2)
    assert r.status_code == 200 and "<title>MLflow</title>" in r.text
    assert "location.replace('#/models')" in r.text  # it opens on the registered models, not the GenAI home
    search = "/services/mlflow/ajax-api/2.0/mlflow/experiments/search"
    r = ada.post(search, json={"max_results": 10}, headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200 and "experiments" in r.json()
    # a page on another site cannot make the browser write with ada's cookie
    assert ada.post(search, json={"max_results": 10}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403


# ---- in a real browser ---------------------------------------------------------------------------
def test_a_stakeholder_reads_the_latest_drift_report_in_chromium(hub, tmp_path):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium and chromedriver are not installed (`make browser` installs them on Debian as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        wait = WebDriverWait(browser, 60)
        browser.get(hub.url + "hub/login")
        wait.until(ec.presence_of_element_located((By.ID, "username_input"))).send_keys("sam")
        browser.find_element(By.ID, "password_input").send_keys(PASSWORD)
        browser.find_element(By.ID, "password_input").submit()  # (a click can be intercepted while the page settles)
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), REPORT_TITLE))
        assert browser.current_url.endswith("/services/reports/")
        browser.get(browser.find_element(By.ID, "latest-drift").get_attribute("href"))
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), DRIFT_TITLE))
        assert browser.find_elements(By.CSS_SELECTOR, "svg, canvas, .plotly"), "the report has no chart"
        shot = tmp_path / "drift-report.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    finally:
        browser.quit()
