"""The page in a real browser: Debian's chromium (headless, via chromedriver + selenium) against ``dpda serve``.

The test starts ``dpda serve`` on 127.0.0.1 (a free port), uploads a clip through the page's file
input and waits for the verdict, the per-window table and the coloured timeline. The screenshot is
written to the test's folder; with DPDA_UPDATE_FIGURES=1 also to docs/figures/serve_page.png.

Without chromium, chromedriver or selenium the test is skipped, unless DPDA_REQUIRE_BROWSER=1 (set by
.ci/run, which installs them): then it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.deploy.conftest import SR

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def need_browser():
    missing = [what for what, ok in (("chromium", os.path.exists(CHROMIUM)), ("chromedriver", os.path.exists(DRIVER)))
               if not ok]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        message = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver; pip install selenium)"
        if os.environ.get("DPDA_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " and DPDA_REQUIRE_BROWSER=1")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clip(path: Path) -> Path:
    """8 s: a voiced-like harmonic part, a noisy part, then harmonics again (different windows score differently)."""
    rng = np.random.default_rng(0)
    t = np.arange(8 * SR) / SR
    voiced = sum(np.sin(2 * np.pi * k * (140 + 20 * np.sin(2 * np.pi * 0.7 * t)) * t) / k for k in range(1, 6))
    x = np.where((t > 3) & (t < 5.5), 0.6 * rng.standard_normal(t.size), 0.3 * voiced / 2.3)
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
    return path


@pytest.fixture
def server(tiny_ckpt, tmp_path):
    from dpda.inference import Scorer

    # a threshold at the median window score, so that the timeline shows both decisions
    scorer = Scorer.from_checkpoint(tiny_ckpt, mode="full")
    audio = clip(tmp_path / "interview.wav")
    from dpda.audio import load_audio

    windows = scorer.windows(load_audio(audio, scorer.sample_rate))
    threshold = float(np.median(scorer.forward(windows)))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "dpda", "serve", "--model", str(tiny_ckpt), "--port", str(port),
                             "--threshold", repr(threshold), "--device", "cpu", "--batch-size", "4"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"dpda serve did not start: {proc.stdout.read()}")
            time.sleep(0.3)
    yield url, audio, windows.shape[0]
    proc.terminate()
    proc.wait(20)


def chromium():
    """Headless chromium; its microphone is chromium's fake device (a beep), allowed without asking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1180,1400",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.mark.slow
def test_upload_through_the_page(server, tmp_path):
    need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, audio, n_windows = server
    driver = chromium()
    try:
        driver.get(url + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "aasist-l" in d.find_element(By.ID, "card-fields").text)
        field = driver.find_element(By.ID, "file")
        driver.execute_script("arguments[0].hidden = false", field)
        field.send_keys(str(audio))
        driver.execute_script("arguments[0].hidden = true", field)
        wait.until(ec.visibility_of_element_located((By.ID, "result")))
        verdict = driver.find_element(By.ID, "verdict")
        assert verdict.get_attribute("class") in ("bonafide", "spoof")
        assert verdict.text.startswith("Likely")
        assert "P(bona fide) = " in driver.find_element(By.ID, "summary").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#windows tbody tr")) == n_windows
        colours = driver.execute_script("""
            const c = document.getElementById('timeline'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let green = 0, red = 0;
            for (let i = 0; i < d.length; i += 4) { if (d[i + 1] > d[i] + 40) green++; if (d[i] > d[i + 1] + 40) red++; }
            return [green, red];""")
        assert colours[0] > 0 and colours[1] > 0, f"the timeline should show both decisions, got {colours}"
        shot = tmp_path / "serve_page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("DPDA_UPDATE_FIGURES") == "1":
            shutil.copy(shot, ROOT / "docs" / "figures" / "serve_page.png")
    finally:
        driver.quit()


@pytest.mark.slow
def test_record_from_the_microphone(server):
    need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = server
    driver = chromium()
    try:
        driver.get(url + "/")
        wait = WebDriverWait(driver, 60)
        button = driver.find_element(By.ID, "record")
        assert button.is_enabled()
        button.click()
        wait.until(lambda d: "Stop" in d.find_element(By.ID, "record").text)
        time.sleep(1.5)
        button.click()
        wait.until(ec.visibility_of_element_located((By.ID, "result")))
        assert "recording.wav" in driver.find_element(By.ID, "summary").text
        assert driver.find_element(By.ID, "verdict").get_attribute("class") in ("bonafide", "spoof")
        assert not driver.find_element(By.ID, "error").is_displayed()
    finally:
        driver.quit()
