"""Check the demo as a visitor and an API caller would, and refresh the screenshots in docs/screenshots/.

    python scripts/demo_screenshots.py --model runs/default-model [--out docs/screenshots]

Starts ``app.py`` (the README's command) on a free port with the given model, then:

* in Debian's headless chromium (Playwright, never a browser download): the Image tab before any
  upload (every chart already titled), ``demo/examples/two_faces.jpg``, a photo whose face touches
  the right edge (caption and valence/arousal box inside the image), two identical faces (their
  names on the circumplex one under the other), and the Video tab on the shipped clip;
* through ``gradio_client``: ``view_api()`` (printed), ``/predict_image`` (no update dicts in the
  answer, faces numbered from 1) and ``/predict_video`` (ints accepted);
* the server log: printed, and checked for Gradio's own noise (startup-events requests, the
  ``share=True`` hint, style.css lines).

Exit status 1 when a check fails. Screenshots: demo_image.png, demo_image_edge.png,
demo_same_point.png, demo_empty.png, demo_video.png.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "demo" / "examples"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
NOISE = ("startup-events", "share=True", "style.css")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def edge_photo(path: Path) -> Path:
    """The astronaut's face touching the right edge of the picture."""
    from skimage import data

    Image.fromarray(data.astronaut()[0:300, 0:280]).save(path)
    return path


def twin_photo(path: Path) -> Path:
    """Two identical faces side by side: identical predictions, one point on the circumplex."""
    from skimage import data

    tile = np.asarray(Image.fromarray(data.astronaut()[20:260, 130:330]))
    canvas = np.full((280, 2 * tile.shape[1] + 60, 3), 128, np.uint8)
    canvas[20:20 + tile.shape[0], 20:20 + tile.shape[1]] = tile
    canvas[20:20 + tile.shape[0], 40 + tile.shape[1]:40 + 2 * tile.shape[1]] = tile
    Image.fromarray(canvas).save(path)
    return path


def start_app(model: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    out = open(log, "w")  # noqa: SIM115 - the server writes to it until it is stopped
    proc = subprocess.Popen([sys.executable, "app.py", "--model", model], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("app.py did not answer")


def check_browser(url: str, out: Path, tmp: Path, failures: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Image").wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "demo_empty.png"), full_page=True)
        def upload(path: Path, expect: str, shot: str) -> None:
            page.locator("#image-input input[type=file]").set_input_files(str(path))
            page.get_by_text(expect).first.wait_for(timeout=60_000)
            page.locator("[data-testid=altair]").nth(1).wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / shot), full_page=True)

        upload(EXAMPLES / "two_faces.jpg", "2 faces found", "demo_image.png")
        upload(edge_photo(tmp / "edge.jpg"), "1 face found", "demo_image_edge.png")
        upload(twin_photo(tmp / "twins.jpg"), "2 faces found", "demo_same_point.png")

        page.get_by_role("tab", name="Video").click()
        page.wait_for_timeout(1000)
        page.locator("#video-input input[type=file]").set_input_files(str(EXAMPLES / "synthetic_clip.mp4"))
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Analyse video").click()
        page.get_by_text("face track").first.wait_for(timeout=120_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "demo_video.png"), full_page=True)
        browser.close()


def check_titles(url: str, failures: list[str]) -> None:
    """Every chart of the page carries a titled chart before it holds a result (the page's config)."""
    import json

    with urllib.request.urlopen(url + "config", timeout=10) as r:
        config = json.load(r)
    plots = [c for c in config["components"] if c.get("type") == "plot"]
    for plot in plots:
        value = plot["props"].get("value")
        spec = json.loads(value["plot"]) if value else {}
        title = spec.get("title")
        title = title.get("text") if isinstance(title, dict) else title
        print(f"chart {plot['props'].get('label')!r} before a result: title {title!r}")
        if not title:
            failures.append(f"chart {plot['props'].get('label')!r} has no title before a result")


def check_client(url: str, failures: list[str]) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    text = client.view_api(print_info=False, return_format="str")
    print(text)
    for bad in ("Literal[]", "mixin", "Mixin", "Choice"):
        if bad in text:
            failures.append(f"view_api shows {bad!r}")
    outputs = client.predict(handle_file(str(EXAMPLES / "two_faces.jpg")), api_name="/predict_image")
    if any(isinstance(o, dict) and "__type__" in o for o in outputs):
        failures.append("/predict_image returned a Gradio update dict")
    faces = outputs[-1]["faces"]
    print("/predict_image faces:", [(f["face"], [round(v) for v in f["box"]]) for f in faces])
    if [f["face"] for f in faces] != list(range(1, len(faces) + 1)):
        failures.append("faces are not numbered 1, 2, ...")
    label, _, _ = client.predict("Face 2", outputs[-1], api_name="/select_face")
    print("/select_face Face 2:", label.get("label") if isinstance(label, dict) else label)
    video = client.predict(handle_file(str(EXAMPLES / "synthetic_clip.mp4")), 3, 1, api_name="/predict_video")
    if any(isinstance(o, dict) and "__type__" in o for o in video):
        failures.append("/predict_video returned a Gradio update dict")
    print("/predict_video summary:", video[2])
    client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a run folder, model folder or Hub id for the demo")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        port = free_port()
        proc = start_app(str(Path(args.model).resolve()), port, log)
        try:
            url = f"http://127.0.0.1:{port}/"
            check_titles(url, failures)
            check_browser(url, args.out, Path(tmp), failures)
            check_client(url, failures)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        text = log.read_text()
    print("---- server log ----\n" + text + "--------------------")
    failures += [f"server log holds Gradio noise: {n!r}" for n in NOISE if n in text]
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
