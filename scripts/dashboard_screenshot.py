"""Refresh docs/screenshots/dashboard_quick_suite.png: the dashboard on the shipped study, as a reader opens it.

    python scripts/dashboard_screenshot.py [--out docs/screenshots/dashboard_quick_suite.png]

Starts the README's ``streamlit run dashboard/app.py`` (no ``--runs``: the shipped ``results/quick``)
from the repository root, headless on a free port, opens it in Debian's chromium (Playwright, never a
browser download) at 1400 x 1450 and saves the first screen. Checks the page as it does so: the
first screen's question and verdicts are there, no traceback, and no local absolute path (the
sidebar shows ``results/quick``, relative to the working folder). Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1400, 1450


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""  # a caller that piped it gets the reason
            raise RuntimeError(f"streamlit exited with {proc.returncode}" + (f":\n{output}" if output else ""))
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server process: SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "dashboard_quick_suite.png")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Debian's chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AFFECT_RUNS_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_selector('[data-testid="stMetric"]', timeout=90_000)
                page.wait_for_selector('[data-testid="stTable"]', timeout=90_000)
                page.wait_for_selector('[data-testid="stVegaLiteChart"] canvas, '
                                       '[data-testid="stVegaLiteChart"] svg', timeout=90_000)
                page.wait_for_timeout(2000)  # let the charts finish their first draw
                body = page.inner_text("body")
                runs_folder = page.input_value('[data-testid="stSidebar"] input[type="text"]')
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
            finally:
                browser.close()
    finally:
        stop(proc)
    problems = []
    if "Did multi-task learning help?" not in body or "quick/multi against one model per task" not in body:
        problems.append("the first screen lacks the question or the quick/multi verdict")
    if "Traceback" in body:
        problems.append("a traceback on the page")
    if runs_folder != "results/quick":
        problems.append(f"the sidebar's runs folder reads {runs_folder!r}, not 'results/quick'")
    if str(ROOT) in body or str(Path.home()) in body:
        problems.append("a local absolute path on the page")
    for problem in problems:
        print(f"check failed: {problem}", file=sys.stderr)
    print(f"{'saved' if not problems else 'saved, with failed checks:'} {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
