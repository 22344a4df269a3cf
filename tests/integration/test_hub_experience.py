"""The hub as its users meet it, in headless Chromium: a data scientist opens 01_explore from the file
browser right after first login; a stakeholder's index shows SHIP on the evaluation card and a drift
card whose values are its latest run's; a stakeholder on a server path gets our refusal, not a 404;
the admin panel offers no "Start Server" for a role without one, and an admin's login starts nothing."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.integration.hubtools import PASSWORD, hub_settings, running_hub
from workbench.reports import build_index
from workbench.runs.record import RunRecord

pytestmark = pytest.mark.integration

USERS = """
groups:
  data-scientists: {server: true, services: [reports]}
  data-stewards: {server: true, services: [reports]}
  stakeholders: {server: false, services: [reports]}
  admins: {admin: true, server: true, services: [reports]}
users:
  admin: [admins]
  ada: [data-scientists]
  sam: [stakeholders]
"""
SERVER_READY_TIMEOUT = 240


def _run(settings, notebook, run_id, job, day, step=None, metrics=None, values=None, status=None):
    folder = settings.path("reports_dir") / "runs" / notebook / run_id
    folder.mkdir(parents=True)
    (folder / "report.html").write_text(f"<html><body><h1>{notebook}</h1></body></html>")
    started = f"2026-11-{day}T07:00:00.000Z"
    RunRecord(
        run_id=run_id,
        notebook=notebook,
        status="succeeded",
        started=started,
        ended=started,
        duration_s=30.0,
        job=job,
        step=step,
        scheduled_for=started,
        published={
            "status": status,
            "metrics": metrics or {},
            "metric_status": {},
            "figures": [],
            "values": values or {},
        },
        files={"report": "report.html"},
        folder=folder,
    ).save()


@pytest.fixture(scope="module")
def hub():
    # Not under pytest's 0700 temp folder: a root hub runs its servers as an unprivileged account, which
    # must be able to pass through to its home in the hub's state folder (as in test_hub.py).
    root = Path(tempfile.mkdtemp(prefix="wb-hub-experience-"))
    root.chmod(0o755)
    try:
        yield from _hub(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _hub(root):
    settings = hub_settings(root, USERS, hub_services=("reports",))
    _run(
        settings,
        "04_drift_monitor",
        "20261101T070000Z-00000a",
        "drift-july",
        "01",
        metrics={"drift_share": 0.5, "model.auc_drop": 0.09},
        status="alert",
    )
    _run(
        settings,
        "04_drift_monitor",
        "20261102T070000Z-00000b",
        "drift-july",
        "02",
        metrics={"drift_share": 0.25, "model.auc_drop": 0.02},
        status="warn",
    )
    _run(settings, "02_train", "20261103T070000Z-00000c", "retrain", "03", step="train", metrics={"auc": 0.71})
    _run(
        settings,
        "05_evaluate",
        "20261103T071000Z-00000d",
        "retrain",
        "03",
        step="evaluate",
        metrics={"challenger_auc": 0.7},
        values={"decision": "SHIP"},
        status="ok",
    )
    build_index(settings)
    with running_hub(settings, root, ["admin", "ada", "sam"]) as hub:
        yield hub


@pytest.fixture
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium and chromedriver are not installed (`make browser` installs them on Debian as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _login(browser, hub, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(hub.url + "hub/login")
    wait.until(ec.presence_of_element_located((By.ID, "username_input"))).send_keys(name)
    browser.find_element(By.ID, "password_input").send_keys(PASSWORD)
    browser.find_element(By.ID, "password_input").submit()
    return wait


def test_a_stakeholders_index_shows_ship_and_the_drift_cards_latest_values(hub, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = _login(browser, hub, "sam")
    wait.until(ec.presence_of_element_located((By.ID, "job-retrain")))
    assert browser.current_url.endswith("/services/reports/")
    assert browser.find_element(By.CSS_SELECTOR, "#job-retrain .verdict").text == "SHIP"
    drift = browser.find_element(By.ID, "job-drift-july")
    values = {
        m.find_element(By.TAG_NAME, "div").text: m.find_element(By.CLASS_NAME, "value").text
        for m in drift.find_elements(By.CLASS_NAME, "metric")
    }
    assert values == {"drift_share": "0.25", "model.auc_drop": "0.02"}  # the latest run's, not the older alert's
    assert [b.text for b in drift.find_elements(By.CSS_SELECTOR, "h3 .badge")] == ["succeeded", "warn"]
    assert browser.find_element(By.CSS_SELECTOR, "nav.top a[href$='logout']")
    shot = tmp_path / "index.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000


def test_a_data_scientist_opens_01_explore_from_the_file_browser_after_first_login(hub, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _login(browser, hub, "ada")
    slow = WebDriverWait(browser, SERVER_READY_TIMEOUT)
    slow.until(lambda b: "/user/ada/lab" in b.current_url)

    def item(name):
        xpath = f"//li[contains(@class,'jp-DirListing-item')][.//span[contains(@class,'jp-DirListing-itemText')][normalize-space()='{name}']]"
        return slow.until(ec.element_to_be_clickable((By.XPATH, xpath)))

    ActionChains(browser).double_click(item("notebooks")).perform()
    ActionChains(browser).double_click(item("01_explore.ipynb")).perform()
    slow.until(
        ec.presence_of_element_located(
            (By.XPATH, "//li[contains(@class,'lm-TabBar-tab')][.//div[normalize-space()='01_explore.ipynb']]")
        )
    )
    slow.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
    slow.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".jp-NotebookPanel"), "Explore a dataset"))
    assert (hub.settings.path("hub_state_dir") / "homes" / "ada" / "shared-notebooks" / "01_explore.ipynb").is_file()


def test_a_stakeholder_on_a_server_path_gets_our_refusal_with_the_way_to_the_reports(hub, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = _login(browser, hub, "sam")
    wait.until(ec.presence_of_element_located((By.ID, "job-retrain")))
    browser.get(hub.url + "user/sam/lab")
    refusal = wait.until(ec.visibility_of_element_located((By.ID, "refusal")))
    assert "No notebook server for your account" in refusal.text and "stakeholders" in refusal.text
    assert "lots of moons" not in browser.page_source
    shot = tmp_path / "refusal.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    browser.find_element(By.ID, "reports").click()
    wait.until(ec.presence_of_element_located((By.ID, "job-retrain")))
    assert browser.current_url.endswith("/services/reports/")


def test_the_admin_panel_offers_no_server_for_a_role_without_one_and_the_admins_login_starts_none(hub, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = _login(browser, hub, "admin")
    wait.until(ec.presence_of_element_located((By.ID, "start")))  # the home page, offering the admin's server
    assert browser.current_url.endswith("/hub/home")
    browser.get(hub.url + "hub/admin")

    def row(name):
        return wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-testid="user-row-{name}"]')))

    # sam has never logged in: listed from hub start, in his group, without a start button
    sam, ada = row("sam"), row("ada")
    assert not [b for b in sam.find_elements(By.CSS_SELECTOR, ".start-button") if b.is_displayed()]
    assert not [
        a
        for a in sam.find_elements(By.TAG_NAME, "a")
        if a.is_displayed() and "/spawn/" in (a.get_attribute("href") or "")
    ]
    # ada may use a server: offered a start (or, when an earlier test left hers running, a stop) button
    assert [b for b in ada.find_elements(By.CSS_SELECTOR, ".start-button, .stop-button") if b.is_displayed()]
    browser.get(hub.url + "hub/admin#/groups")
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "stakeholders"))
    for group in ("admins", "data-scientists", "data-stewards", "stakeholders"):
        assert group in browser.find_element(By.TAG_NAME, "body").text
