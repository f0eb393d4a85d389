"""The rendered index.html in headless Chromium: no console errors, sorting, filtering, a screenshot.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/setup.sh`` installs them when it runs as
root with apt) and ``selenium`` (dev extra). Missing browser = failure with a clear message, never a skip.
Run as a script (``python tests/integration/test_leaderboard_browser.py``) it screenshots the repository's
``leaderboards/index.html`` into ``leaderboards/screenshots/index.png``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))


def _driver():  # noqa: ANN202
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("headless Chromium is required: run `apt-get install -y chromium chromium-driver` "
                    "(scripts/setup.sh does it as root)")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--allow-file-access-from-files"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def screenshot(index: Path, png: Path) -> None:
    """Open ``index`` in headless Chromium and save a PNG screenshot to ``png``."""
    drv = _driver()
    try:
        drv.get(index.resolve().as_uri())
        png.parent.mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(png))
    finally:
        drv.quit()


@pytest.mark.integration
def test_index_html_sorts_and_filters(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from test_leaderboard import _population, make_results

    from benchmark.leaderboard import write_leaderboard

    df = make_results()
    pop, ex = _population(df)
    write_leaderboard(df, tmp_path, population=pop, population_examples=ex)
    drv = _driver()
    try:
        drv.get((tmp_path / "index.html").as_uri())
        errors = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], errors
        table = drv.find_elements(By.CSS_SELECTOR, "table.lb.headline")[0]

        def methods() -> list[str]:
            rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
            return [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows if r.is_displayed()]

        before = methods()
        assert before[0] == "retrain"  # ranked by ToW AUC
        header = table.find_elements(By.TAG_NAME, "th")[0]  # Method: alphabetical on click
        header.click()
        assert methods() == sorted(before)
        header.click()
        assert methods() == sorted(before, reverse=True)
        box = drv.find_element(By.ID, "filter")
        box.send_keys("finetune")
        assert methods() == ["finetune"]
        box.clear()
        box.send_keys(" ")  # an input event with no words: everything back
        assert len(methods()) == len(before)
        drv.save_screenshot(str(tmp_path / "screenshot.png"))
        assert (tmp_path / "screenshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"] == []
    finally:
        drv.quit()


if __name__ == "__main__":
    screenshot(ROOT / "leaderboards" / "index.html", ROOT / "leaderboards" / "screenshots" / "index.png")
