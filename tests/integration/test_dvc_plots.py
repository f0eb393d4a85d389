"""`dvc plots show` offline: the committed plot data through the repository's plot templates and its local
Vega page template, loaded in headless Chromium (no CDN, no network).

Needs Debian's ``chromium`` and ``chromium-driver`` (as ``test_leaderboard_browser.py``). Run as a script
(``python tests/integration/test_dvc_plots.py``) it renders the repository's plots and writes the screenshot
``leaderboards/screenshots/dvc_plots.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).parent))

from test_leaderboard_browser import _driver  # noqa: E402

# what `dvc plots show` needs: the pipeline file (top-level plots:), params (its interpolation), DVC's
# config and templates, the plot data and the local Vega libraries
NEEDED = ("dvc.yaml", "params.yaml", ".dvc/config", ".dvc/plots", "leaderboards/dvc_plots",
          "leaderboards/vendor")


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def render(repo: Path) -> Path:
    """Copy what ``dvc plots show`` needs from the repository into ``repo`` (a fresh git repository), run it
    with the page template given explicitly, and return the written ``dvc_plots/index.html``."""
    for rel in NEEDED:
        src, dst = ROOT / rel, repo / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    out = repo / "dvc_plots"  # one folder below the root: the page loads ../leaderboards/vendor/*.js
    proc = subprocess.run(["dvc", "plots", "show", "--html-template", ".dvc/plots/page.html", "-o", str(out)],
                          cwd=repo, env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "index.html"


def check_page(index: Path, png: Path) -> list[dict]:
    """Load ``index`` in headless Chromium, wait for every Vega view, screenshot it to ``png``; return the
    console's SEVERE entries and assert one rendered SVG/canvas per plot."""
    from selenium.webdriver.common.by import By

    html = index.read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in html and '<script src="http' not in html  # local copies only
    n_plots = html.count("vegaEmbed(")
    assert n_plots == 2, f"expected the two plots of dvc.yaml, found {n_plots}"
    drv = _driver()
    try:
        drv.get(index.resolve().as_uri())
        deadline = time.monotonic() + 60
        views: list = []
        while time.monotonic() < deadline:
            views = drv.find_elements(By.CSS_SELECTOR, "svg.marks, canvas.marks")
            if len(views) >= n_plots:
                break
            time.sleep(0.5)
        assert len(views) == n_plots, f"{len(views)} rendered Vega views of {n_plots}"
        for v in views:
            assert v.size["width"] > 200 and v.size["height"] > 100, v.size
        # every plot drew marks: lines/points of the ToW curves, one rect per bar
        marks = drv.execute_script(
            "return Array.from(document.querySelectorAll('svg.marks, canvas.marks')).map("
            "el => el.tagName === 'svg' ? el.querySelectorAll('path, rect').length : -1)")  # fmt: skip
        assert all(m != 0 for m in marks), marks
        png.parent.mkdir(parents=True, exist_ok=True)
        height = drv.execute_script("return document.documentElement.scrollHeight")
        drv.set_window_size(1400, max(1000, int(height) + 120))
        drv.save_screenshot(str(png))
        return [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
    finally:
        drv.quit()


@pytest.mark.integration
def test_dvc_plots_render_offline(tmp_path: Path) -> None:
    index = render(tmp_path / "repo")
    errors = check_page(index, tmp_path / "dvc_plots.png")
    assert errors == [], errors
    assert (tmp_path / "dvc_plots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the field types the templates declare: step quantitative, method nominal (bars too)
    steps = json.loads((ROOT / ".dvc/plots/tow_steps.json").read_text())["spec"]["encoding"]
    bars = json.loads((ROOT / ".dvc/plots/headline_bars.json").read_text())["spec"]["encoding"]
    assert steps["x"]["type"] == "quantitative" and steps["y"]["type"] == "quantitative"
    assert steps["color"]["field"] == "method" and steps["color"]["type"] == "nominal"
    assert bars["x"]["type"] == "nominal" and bars["y"]["type"] == "quantitative"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        page = render(Path(tmp) / "repo")
        errors = check_page(page, ROOT / "leaderboards" / "screenshots" / "dvc_plots.png")
        print(errors or "no console errors")
