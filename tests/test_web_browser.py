"""End-to-end tests of the web demo in headless Chromium (Debian's ``chromium`` +
``chromium-driver``, driven by Selenium) against the app served on 127.0.0.1.

Skipped, with the reason, only when Chromium, ChromeDriver or Selenium is absent; ``.ci/run``
installs them, so they run in CI. Set ``CLIPDENOISE_UPDATE_SCREENSHOT=1`` to also refresh
``docs/screenshot.png`` (the picture in docs/web.md) from the built-in model's run.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("fastapi")
selenium = pytest.importorskip(
    "selenium", reason="selenium is not installed (pip install selenium)"
)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from clipdenoise.web import ServeConfig, build_catalogue, create_app  # noqa: E402
from clipdenoise.web.catalogue import TINY_DEMO_KEY  # noqa: E402
from clipdenoise.web.server import BackgroundServer  # noqa: E402

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CLIPDENOISE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CLIPDENOISE_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def _find(executable: str) -> str | None:
    return executable if Path(executable).is_file() else shutil.which(Path(executable).name)


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    chromium, driver = _find(CHROMIUM), _find(CHROMEDRIVER)
    if chromium is None or driver is None:
        pytest.skip(
            "headless Chromium not installed (apt-get install chromium chromium-driver; "
            f"looked for {CHROMIUM} and {CHROMEDRIVER})"
        )
    return chromium, driver


@pytest.fixture(scope="module")
def server():
    catalogue = build_catalogue(tiny_demo=True, include_imported=False, baselines=True)
    app = create_app(catalogue, config=ServeConfig(max_upload_bytes=1024 * 1024))
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def download_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(browser_paths, download_dir, tmp_path_factory):
    chromium, chromedriver = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(download_dir), "download.prompt_for_download": False},
    )
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


def open_page(driver, server) -> None:
    driver.get(server.url)
    WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true"
    )


def set_noise(driver, kind: str, level: str, seed: str) -> None:
    Select(driver.find_element(By.ID, "noise-kind")).select_by_value(kind)
    for element_id, value in (("noise-level", level), ("noise-seed", seed)):
        field = driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)


def wait_for_result(driver, timeout: float = 60.0) -> None:
    def finished(d):
        error = d.find_element(By.ID, "error")
        if error.is_displayed():
            raise AssertionError(f"the page shows an error: {error.text}")
        return d.find_element(By.ID, "result").is_displayed()

    WebDriverWait(driver, timeout).until(finished)
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script(
            "const i = document.getElementById('img-right'); return i.complete && i.naturalWidth > 0;"
        )
    )


def wait_for_download(folder: Path, name: str, timeout: float = 20.0) -> Path:
    target = folder / name
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if target.is_file() and not list(folder.glob("*.crdownload")):
            return target
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; folder has {sorted(folder.iterdir())}")


def current_job_id(driver) -> str:
    href = driver.find_element(By.ID, "download-restored").get_attribute("href")
    return href.split("/api/jobs/")[1].split("/")[0]


def test_upload_noise_denoise_compare_download(driver, server, download_dir, tmp_path):
    upload = tmp_path / "my photo.png"
    pixels = (np.random.default_rng(0).random((96, 128, 3)) * 80 + 90).astype(np.uint8)
    Image.fromarray(pixels).save(upload)
    open_page(driver, server)
    # the built-in trained model is chosen first; the page still says how to add the paper's
    select = Select(driver.find_element(By.ID, "model-select"))
    assert select.first_selected_option.get_attribute("value") == "builtin.blind-unet"
    assert "clipdenoise weights" in driver.find_element(By.ID, "banner-guidance").text
    select.select_by_value(TINY_DEMO_KEY)
    assert "UNTRAINED" in select.first_selected_option.text
    assert driver.find_element(By.ID, "banner-untrained").is_displayed()

    driver.find_element(By.ID, "file-input").send_keys(str(upload))
    assert "my photo.png" in driver.find_element(By.ID, "file-name").text
    WebDriverWait(driver, 10).until(
        lambda d: (
            d.execute_script("return document.getElementById('source-preview').naturalWidth") == 128
        )
    )
    set_noise(driver, "gaussian", "25", "1234")
    Select(driver.find_element(By.ID, "model-select")).select_by_value(TINY_DEMO_KEY)
    driver.find_element(By.ID, "denoise-button").click()
    wait_for_result(driver)

    # before/after slider and zoom are present and work
    slider = driver.find_element(By.ID, "compare-slider")
    assert slider.is_enabled() and driver.find_element(By.ID, "divider").is_displayed()
    clip_before = driver.find_element(By.ID, "img-right").value_of_css_property("clip-path")
    ActionChains(driver).click_and_hold(slider).move_by_offset(-200, 0).release().perform()
    clip_after = driver.find_element(By.ID, "img-right").value_of_css_property("clip-path")
    assert clip_before != clip_after
    driver.find_element(By.CSS_SELECTOR, '.zoom-button[data-zoom="4"]').click()
    stage_width = driver.execute_script("return document.getElementById('stage').offsetWidth;")
    assert stage_width == 4 * 128
    driver.find_element(By.CSS_SELECTOR, '.zoom-button[data-zoom="fit"]').click()

    # metrics, seed and timing are shown
    psnr_noisy = driver.find_element(By.ID, "psnr-noisy").text
    assert float(psnr_noisy) == pytest.approx(20.5, abs=1.5)
    assert "seed 1234" in driver.find_element(By.ID, "fact-noise").text
    assert "denoised in" in driver.find_element(By.ID, "fact-time").text
    driver.execute_script("window.scrollTo(0, 0);")
    screenshot = tmp_path / "demo-after-denoise.png"
    assert driver.save_screenshot(str(screenshot))
    with Image.open(screenshot) as shot:
        assert shot.size[0] >= 1000

    # the browser's download is byte-identical to the server-side result
    driver.find_element(By.ID, "download-restored").click()
    downloaded = wait_for_download(download_dir, "my_photo-denoised.png")
    job = server.app.state.manager.get(current_job_id(driver))
    assert downloaded.read_bytes() == job.result.files["restored"]
    with Image.open(io.BytesIO(job.result.files["restored"])) as restored:
        assert restored.size == (128, 96) and restored.mode == "RGB"

    # a second model on the same image, noise and seed is compared with the first
    first_job = job.id
    Select(driver.find_element(By.ID, "model-select")).select_by_value("nlm")
    driver.find_element(By.ID, "denoise-button").click()
    WebDriverWait(driver, 60).until(lambda d: current_job_id(d) != first_job)
    wait_for_result(driver)
    earlier = driver.find_elements(By.CSS_SELECTOR, "#earlier-runs tr")
    assert len(earlier) == 1 and "UNTRAINED" in earlier[0].text
    left = Select(driver.find_element(By.ID, "left-choice"))
    left.select_by_value(f"job:{first_job}")
    assert (
        driver.find_element(By.ID, "img-left")
        .get_attribute("src")
        .endswith(f"/api/jobs/{first_job}/previews/restored")
    )
    assert driver.find_element(By.ID, "psnr-noisy").text == psnr_noisy  # same noisy input


def test_non_image_upload_shows_message_on_page(driver, server, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"definitely not a JPEG file")
    open_page(driver, server)
    driver.find_element(By.ID, "file-input").send_keys(str(fake))
    driver.find_element(By.ID, "denoise-button").click()
    error = WebDriverWait(driver, 20).until(
        lambda d: (
            d.find_element(By.ID, "error")
            if d.find_element(By.ID, "error").is_displayed()
            else None
        )
    )
    assert "not a supported image" in error.text
    assert not driver.find_element(By.ID, "source-preview").is_displayed()
    assert not driver.find_element(By.ID, "result").is_displayed()


DROP_FILE_SCRIPT = """
const [name, done] = arguments;
fetch('/api/samples/chart').then((response) => response.blob()).then((blob) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([blob], name, {type: 'image/png'}));
  const zone = document.getElementById('dropzone');
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
  }
  done(true);
});
"""


def test_drag_and_drop_upload(driver, server):
    open_page(driver, server)
    driver.set_script_timeout(20)
    assert driver.execute_async_script(DROP_FILE_SCRIPT, "dropped-chart.png")
    assert "dropped-chart.png" in driver.find_element(By.ID, "file-name").text
    Select(driver.find_element(By.ID, "noise-kind")).select_by_value("none")
    driver.find_element(By.ID, "denoise-button").click()
    wait_for_result(driver)
    assert driver.find_element(By.ID, "no-metrics").is_displayed()
    assert "384×256 RGB, PNG 8-bit" in driver.find_element(By.ID, "fact-image").text
    assert (
        driver.find_element(By.ID, "download-restored").get_attribute("download")
        == "dropped-chart-denoised.png"
    )


def test_builtin_model_and_screenshot(driver, server, tmp_path):
    open_page(driver, server)
    driver.find_element(By.CSS_SELECTOR, '.sample[data-key="scene"]').click()
    set_noise(driver, "gaussian", "25", "7")
    select = Select(driver.find_element(By.ID, "model-select"))
    assert select.first_selected_option.get_attribute("value") == "builtin.blind-unet"
    assert not driver.find_element(By.ID, "banner-untrained").is_displayed()
    driver.find_element(By.ID, "denoise-button").click()
    wait_for_result(driver)
    psnr_noisy = float(driver.find_element(By.ID, "psnr-noisy").text)
    psnr_restored = float(driver.find_element(By.ID, "psnr-restored").text)
    assert psnr_restored > psnr_noisy + 8.0
    Select(driver.find_element(By.ID, "left-choice")).select_by_value("clean")
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "img-left").get_attribute("src").endswith("/previews/clean")
    )
    Select(driver.find_element(By.ID, "left-choice")).select_by_value("noisy")
    driver.set_window_size(1400, 1240)  # tall enough for the metrics and downloads
    try:
        time.sleep(0.5)
        driver.execute_script("window.scrollTo(0, 0);")
        screenshot = tmp_path / "demo-baseline.png"
        assert driver.save_screenshot(str(screenshot))
    finally:
        driver.set_window_size(1400, 1000)
    if os.environ.get("CLIPDENOISE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, REPO_ROOT / "docs" / "screenshot.png")


class SlowIdentity(nn.Module):
    """Identity network taking 0.1 s per forward call (one call per tile)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        time.sleep(0.1)
        return x * self.scale


@pytest.fixture(scope="module")
def slow_server():
    catalogue = build_catalogue(
        models={"slow": SlowIdentity()}, include_imported=False, baselines=False
    )
    app = create_app(catalogue, config=ServeConfig(tile_size=64, tile_overlap=16))
    with BackgroundServer(app) as running:
        yield running


def test_tiled_progress_shown_and_cancel_button(driver, slow_server):
    open_page(driver, slow_server)
    driver.find_element(By.CSS_SELECTOR, '.sample[data-key="scene"]').click()
    driver.find_element(By.ID, "denoise-button").click()
    progress_text = driver.find_element(By.ID, "progress-text")
    WebDriverWait(driver, 20).until(lambda d: "denoising tile" in progress_text.text)
    assert driver.find_element(By.ID, "progress").is_displayed()
    assert re.search(r"tile \d+ of \d+ — \d+%", progress_text.text), progress_text.text
    width = driver.execute_script("return document.getElementById('progress-bar').style.width;")
    assert width.endswith("%")
    driver.find_element(By.ID, "cancel-button").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert driver.find_element(By.ID, "error").text == "Cancelled."
    assert not driver.find_element(By.ID, "progress").is_displayed()
    states = [job.state.value for job in slow_server.app.state.manager._jobs.values()]
    assert states == ["cancelled"]
