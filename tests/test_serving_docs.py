"""The serving wrapper's /docs renders with the network off: Swagger UI's assets come from the
fastapi-offline package's static files, served by the app itself (real uvicorn, real headless Chromium)."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import httpx
import pytest

from workbench.serving import docs_assets

from .notebook_factory import make_home


def test_the_page_loads_nothing_from_another_host():
    page = docs_assets.docs_html("t")
    assert "http" not in page and f'src="{docs_assets.ASSETS_PATH}/swagger-ui-bundle.js"' in page
    content, media_type = docs_assets.asset("swagger-ui-bundle.js")
    assert media_type == "application/javascript" and b"SwaggerUIBundle" in content
    assert docs_assets.asset("../../etc/passwd") is None and docs_assets.asset("index.html") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    import uvicorn

    from workbench.serving.app import create_app
    from workbench.serving.options import ServeOptions

    settings = make_home(tmp_path).with_overrides(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", mlflow_artifacts=str(tmp_path / "mlartifacts")
    )
    options = ServeOptions(model_name="no-such-model", reload_interval=0, log_predictions=False)
    app = create_app(settings, options, load_in_background=True)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if httpx.get(base + "/docs", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_docs_render_in_chromium_with_the_network_off(served):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium and chromedriver are not installed (`make browser` installs them on Debian as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert (
        httpx.get(served + docs_assets.ASSETS_PATH + "/swagger-ui.css").headers["content-type"].startswith("text/css")
    )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        # the network off: every host but 127.0.0.1 fails to resolve
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(served + "/docs")
        WebDriverWait(browser, 60).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#swagger-ui .information-container"))
        )
        assert "/predict" in browser.find_element(By.ID, "swagger-ui").text
    finally:
        browser.quit()
