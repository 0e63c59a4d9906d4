"""The dashboard in a real browser: `streamlit run` headless on 127.0.0.1, opened in Debian's chromium.

Saves test-output/dashboard.png (the first screen, 1440x900) and test-output/dashboard-full.png
(the whole page) for a person to look at.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from net import free_port
from study_fixtures import write_seeded_study

# one way to start and reach the dashboard, shared with the screenshot script
from scripts.dashboard_screenshot import CHROMIUM_ARGS, stop, wait_healthy

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "dashboard" / "app.py"
OUT = REPO / "test-output"
CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]




@pytest.fixture
def dashboard_url(tmp_path):
    runs = tmp_path / "runs"
    # A synthetic quick suite with three seeds and a clear multi-task gain.
    write_seeded_study(runs, multi_gain=0.2)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--", "--runs", str(runs / "quick")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout=60)
        yield url
    finally:
        stop(proc)


def test_dashboard_renders_headline_and_table_in_chromium(dashboard_url):
    from playwright.sync_api import sync_playwright

    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(dashboard_url, wait_until="domcontentloaded")
            page.wait_for_selector('[data-testid="stDataFrame"]:visible', timeout=60_000)
            page.wait_for_selector('[data-testid="stMetric"]', timeout=30_000)
            page.wait_for_selector('[data-testid="stVegaLiteChart"] canvas, '
                                   '[data-testid="stVegaLiteChart"] svg', timeout=30_000)
            page.wait_for_timeout(1500)  # let the charts finish their first draw
            body = page.inner_text("body")
            page.screenshot(path=str(OUT / "dashboard.png"))
            # Streamlit scrolls inside its main block, so a full-page shot needs a tall viewport
            page.set_viewport_size({"width": 1440, "height": 2500})
            page.wait_for_timeout(1500)
            page.screenshot(path=str(OUT / "dashboard-full.png"), full_page=True)
        finally:
            browser.close()
    assert "Did multi-task learning help?" in body
    assert "Synthetic benchmark" in body
    assert "Traceback" not in body
    # the matched verdict, with intervals and seeds, in plain words
    assert "quick/multi against one model per task" in body and "helped: +" in body and "3/3 seeds" in body
    assert "Best runs per task (not a verdict" in body
    assert (OUT / "dashboard.png").stat().st_size > 10_000


def test_dashboard_on_the_shipped_study_in_chromium(tmp_path):
    """The README's `streamlit run dashboard/app.py`, as written (no --runs: the shipped results/quick),
    served headless and opened in chromium."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    from playwright.sync_api import sync_playwright

    try:
        wait_healthy(url, proc, timeout=60)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
                page.wait_for_selector('[data-testid="stDataFrame"]:visible', timeout=60_000)
                page.wait_for_selector('[data-testid="stTable"]', timeout=60_000)
                page.wait_for_timeout(1500)  # let the charts finish their first draw
                body = page.inner_text("body")
                tables = [t.inner_text() for t in page.query_selector_all('[data-testid="stTable"]')]
                # no table wider than the page at 1400 px (the HTML tables wrap instead)
                overflow = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stTable"]')]
                    .filter(t => t.scrollWidth > t.clientWidth + 1).length""")
                captions = [c.inner_text() for c in page.query_selector_all('[data-testid="stCaptionContainer"]')]
                cut = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
                    .filter(c => c.scrollWidth > c.clientWidth + 1).length""")
                OUT.mkdir(exist_ok=True)
                (OUT / "dashboard-shipped.txt").write_text(body)
                page.screenshot(path=str(OUT / "dashboard-shipped.png"))
            finally:
                browser.close()
    finally:
        stop(proc)
    assert "Did multi-task learning help?" in body and "synthetic-affect (synthetic benchmark)" in body
    assert "quick/multi against one model per task" in body and "Traceback" not in body
    assert len(tables) >= 2 and overflow == 0 and cut == 0  # the cost and comparison tables, whole
    assert all(word not in text.split() for text in tables for word in ("None", "NaN", "nan"))
    assert "–" in tables[-1]  # the unmatched comparisons have no difference: a dash, not None
    assert "no clear difference · 3 seeds multi, 3 uni" in captions and "of 3 uni-task models" in captions
