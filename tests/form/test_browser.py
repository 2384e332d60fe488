"""The form in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium, no download)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mlm_export._form.session import HAND_EDITED

from ..conftest import ROOT
from .helpers import running

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def _selenium_offline(monkeypatch):
    """Selenium Manager must never download a driver or a browser."""
    monkeypatch.setenv("SE_OFFLINE", "true")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("needs Debian's chromium and chromium-driver: run ./dev (installs them) or apt-get install them")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,1800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def row(driver, *path):
    return driver.find_element(By.CSS_SELECTOR, f"[data-path='{json.dumps(list(path), separators=(',', ':'))}']")


def wait_status(driver, text: str):
    WebDriverWait(driver, 15).until(lambda d: text in d.find_element(By.ID, "status").text)


def keep_screenshot(driver, tmp_path: Path, name: str) -> Path:
    """Save a full-page screenshot under the test's tmp dir and copy it to test-artifacts/ (ignored by git)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height), 6000))
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    return shot


def test_fill_fix_and_save_a_derived_item(browser, item_path, tmp_path, assert_valid):
    path = item_path
    original_bytes = path.read_bytes()
    original = json.loads(original_bytes)
    with running(path) as server:
        browser.get(server.url)
        wait_status(browser, "valid")
        # derived values are locked and say where they come from
        params = row(browser, "properties", "mlm:total_parameters")
        assert params.find_element(By.CSS_SELECTOR, "input").get_attribute("disabled") is not None
        assert "derived from the model's parameters" in params.find_element(By.CSS_SELECTOR, ".derived").text

        description = "Segments land, water and cloud in Sentinel-2 L2A scenes (10 m)."
        row(browser, "properties", "description").find_element(By.CSS_SELECTOR, "textarea").send_keys(description)
        license_row = row(browser, "properties", "license")
        license_input = license_row.find_element(By.CSS_SELECTOR, "input")
        license_input.send_keys("CC BY 4.0")
        WebDriverWait(browser, 15).until(lambda d: "invalid" in license_row.get_attribute("class"))
        assert "does not match" in license_row.find_element(By.CSS_SELECTOR, ".msg").text
        assert browser.find_element(By.ID, "save").get_attribute("disabled") is not None
        keep_screenshot(browser, tmp_path, "form-live-error.png")

        license_input.clear()
        license_input.send_keys("CC-BY-4.0")
        # a class description, and a colour from the picker (set as the picker would, then its input event)
        classes = ("properties", "mlm:output", 0, "classification:classes", 1)
        class_description = row(browser, *classes, "description").find_element(By.CSS_SELECTOR, "textarea")
        class_description.clear()
        class_description.send_keys("Open water")
        picker = row(browser, *classes, "color_hint").find_element(By.CSS_SELECTOR, "input[type=color]")
        browser.execute_script("arguments[0].value = '#1f77b4'; arguments[0].dispatchEvent(new Event('input'))", picker)
        wait_status(browser, "valid")
        assert "invalid" not in license_row.get_attribute("class")
        save = browser.find_element(By.ID, "save")
        assert save.get_attribute("disabled") is None
        save.click()
        wait_status(browser, "saved")
        keep_screenshot(browser, tmp_path, "form-saved.png")
        first_save = json.loads(path.read_text())

        # unlocking a derived value and changing it is recorded as a hand edit
        row(browser, "properties", "mlm:total_parameters").find_element(By.CSS_SELECTOR, ".unlock").click()
        params = row(browser, "properties", "mlm:total_parameters").find_element(By.CSS_SELECTOR, "input")
        assert params.get_attribute("disabled") is None
        params.clear()
        params.send_keys("6000")
        wait_status(browser, "valid")
        browser.find_element(By.ID, "save").click()
        wait_status(browser, "saved")
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]

    saved = first_save
    assert_valid(saved)
    expected = json.loads(original_bytes)
    expected["properties"]["description"] = description
    expected["properties"]["license"] = "CC-BY-4.0"
    expected["properties"]["mlm:output"][0]["classification:classes"][1].update(
        description="Open water", color_hint="1F77B4"
    )
    assert saved == expected
    assert original["properties"].get("description") is None
    edited = json.loads(path.read_text())
    assert_valid(edited)
    assert edited["properties"]["mlm:total_parameters"] == 6000
    assert edited["properties"][HAND_EDITED] == ["$['properties']['mlm:total_parameters']"]
    assert {k: v for k, v in edited["properties"].items() if k not in (HAND_EDITED, "mlm:total_parameters")} == {
        k: v for k, v in expected["properties"].items() if k != "mlm:total_parameters"
    }
    assert json.loads((path.parent / (path.name + ".bak")).read_text()) == first_save


def test_blank_form_offers_the_schema_choices(browser, tmp_path):
    with running(tmp_path / "new.json") as server:
        browser.get(server.url)
        wait_status(browser, "problem")
        tasks = row(browser, "properties", "mlm:tasks").find_elements(By.CSS_SELECTOR, "input[type=checkbox]")
        assert "semantic-segmentation" in [t.get_attribute("value") for t in tasks]
        licenses = browser.execute_script("return [...document.querySelectorAll('#spdx option')].map(o => o.value)")
        assert len(licenses) > 500
        assert {"MIT", "Apache-2.0", "CC-BY-4.0", "other"} <= set(licenses)
        # nothing is locked in a blank form, and required fields show their problem where they are typed
        assert not browser.find_elements(By.CSS_SELECTOR, ".derived")
        name = row(browser, "properties", "mlm:name")
        assert "required" in name.find_element(By.CSS_SELECTOR, ".msg").text
        keep_screenshot(browser, tmp_path, "form-blank.png")


def test_a_strangers_item_cannot_run_script_in_the_page(browser, item_path):
    """Markup in values and keys of an Item from elsewhere is shown as text, never parsed or run."""
    path = item_path
    item = json.loads(path.read_text())
    img = '<img src=x onerror="window.__pwned=1">'
    item["properties"]["description"] = img
    item["properties"]["<b>x</b>"] = "<script>window.__pwned=2</script>"
    item["properties"]["mlm:output"][0]["classification:classes"][0]["name"] = (
        "</textarea><script>window.__pwned=3</script>"
    )
    item["assets"]['x" onmouseover="window.__pwned=4'] = {"href": "javascript:window.__pwned=5", "roles": ["data"]}
    path.write_text(json.dumps(item))
    with running(path) as server:
        browser.get(server.url)
        wait_status(browser, "valid")
        assert browser.execute_script("return window.__pwned") is None
        assert (
            row(browser, "properties", "description").find_element(By.CSS_SELECTOR, "textarea").get_property("value")
            == img
        )
        other = row(browser, "properties", "<b>x</b>")
        assert other.find_element(By.CSS_SELECTOR, ".label").text == "<b>x</b>"
        assert not browser.find_elements(By.CSS_SELECTOR, "main b, main img, main script")
