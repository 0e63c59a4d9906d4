"""The demo in a real browser: Debian's headless Chromium driven by Playwright (never a browser
download). Screenshots go to test-output/ for people to look at.

The webcam tab is fed by Chromium's fake camera, which plays a Y4M file made here from the
astronaut photo, so the live stream is exercised end to end.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = [
    pytest.mark.browser,
    # Gradio's queue calls pandas options that pandas 3 deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
av = pytest.importorskip("av")
skimage_data = pytest.importorskip("skimage.data")

from net import free_port  # noqa: E402

from affectmodel.inference import write_video_frames  # noqa: E402
from affectmodel.model import AffectModel, ModelConfig  # noqa: E402
from demo import app as demo_app  # noqa: E402

OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]




def astronaut(size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(skimage_data.astronaut()).resize((size, size)))


def fake_camera_file(path: Path, frames: int = 6) -> Path:
    """A Y4M clip (what Chromium's fake camera plays) with a face in the middle."""
    frame = np.full((240, 320, 3), 60, np.uint8)
    frame[20:220, 60:260] = astronaut(200)
    container = av.open(str(path), "w", format="yuv4mpegpipe")
    stream = container.add_stream("rawvideo", rate=5)
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    for i in range(frames):
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.roll(frame, 2 * i, axis=1), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_browser")
    torch.manual_seed(0)
    run = root / "run"
    AffectModel(ModelConfig(input_size=64)).save(run / "model")
    (run / "metrics.json").write_text(json.dumps({
        "tasks": ["expr", "au", "va"], "P_EXPR": 0.41, "P_AU": 0.52, "P_VA": 0.33, "P_MTL": 1.26,
        "dataset": {"name": "synthetic-affect", "synthetic": True, "split": "validation"}}))
    demo = demo_app.build_demo(str(run))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True,
                            **demo_app.launch_options())
    yield url
    demo.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo_browser_media")
    face = astronaut(160)
    frames = []
    for i in range(20):
        frame = np.full((200, 320, 3), 50, np.uint8)
        frame[20:180, 10 + 7 * i:170 + 7 * i] = face
        frames.append(frame)
    video = root / "moving_face.mp4"
    write_video_frames(video, frames, fps=10)
    return {"video": video, "camera": fake_camera_file(root / "camera.y4m")}


@pytest.fixture(scope="module")
def page(app_url, media):
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                  f"--use-file-for-fake-video-capture={media['camera']}"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
        page = context.new_page()
        page.goto(app_url)
        page.get_by_role("tab", name="Image").wait_for(timeout=60_000)
        yield page
        browser.close()


def test_first_screen_warns_about_the_synthetic_model(page):
    banner = page.locator(".affect-banner")
    banner.wait_for(timeout=30_000)
    assert "not meaningful" in banner.inner_text()


def test_image_upload_shows_faces_expression_and_charts(page):
    examples = Path(demo_app.EXAMPLES_DIR)
    page.locator("#image-input input[type=file]").set_input_files(str(examples / "two_faces.jpg"))
    page.get_by_text("2 faces found").wait_for(timeout=60_000)
    # the expression label names the top class of face 1; the charts are drawn (vega canvases/SVG)
    label = page.locator("[data-testid=label-output-value]").first.inner_text()
    assert any(name in label for name in ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness",
                                          "Surprise", "Other"))
    page.locator("[data-testid=altair]").nth(1).wait_for(timeout=30_000)
    assert page.get_by_text("Face 2").first.is_visible()
    page.wait_for_timeout(1000)  # let the charts finish drawing
    page.screenshot(path=str(OUTPUT / "demo_image.png"), full_page=True)


def test_bad_image_shows_a_readable_error(page, tmp_path):
    import io

    buffer = io.BytesIO()
    Image.fromarray(astronaut(256)).save(buffer, format="JPEG")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # cut off mid-file
    page.locator("#image-input input[type=file]").set_input_files(str(broken))
    try:
        page.get_by_text("broken.jpg: truncated image").first.wait_for(timeout=30_000)
        page.wait_for_timeout(800)  # the message slides in
    finally:
        page.screenshot(path=str(OUTPUT / "demo_image_error.png"))
    assert not page.get_by_text("faces found").is_visible()  # no stale results from the last image
    # the app keeps serving: an example runs straight away
    page.locator("#image-examples button").first.click()
    page.get_by_text("1 face found").wait_for(timeout=60_000)
    page.reload()  # a fresh page for the next tabs (the error message would stay in their screenshots)
    page.get_by_role("tab", name="Video").wait_for(timeout=60_000)


def test_video_tab_analyses_a_video(page, media):
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-input input[type=file]").set_input_files(str(media["video"]))
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Analyse video").click()
    page.get_by_text("1 face track").wait_for(timeout=120_000)
    csv_link = page.locator("#video-csv a").first  # the CSV download
    csv_link.wait_for(timeout=30_000)
    assert "predictions" in csv_link.inner_text() + (csv_link.get_attribute("href") or "")
    page.locator("video").nth(1).wait_for(timeout=30_000)  # the annotated video
    page.wait_for_timeout(1500)
    page.screenshot(path=str(OUTPUT / "demo_video.png"), full_page=True)


def test_webcam_tab_streams_predictions(page):
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_text("Click to Access Webcam").click()
    page.get_by_text("Record", exact=True).click(timeout=30_000)
    page.get_by_text("ms per frame").wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    page.screenshot(path=str(OUTPUT / "demo_webcam.png"), full_page=True)
    page.get_by_text("Stop", exact=True).click()


def test_about_tab_explains_model_and_outputs(page):
    page.get_by_role("tab", name="About").click()
    page.get_by_text("What the outputs mean").wait_for(timeout=30_000)
    assert page.get_by_text("lip corner puller").first.is_visible()
    assert page.get_by_text("synthetic-affect").first.is_visible()
    page.screenshot(path=str(OUTPUT / "demo_about.png"), full_page=True)


def test_unloadable_model_page_says_what_failed_and_which_variable_to_set(page, tmp_path, monkeypatch):
    """AFFECT_MODEL naming a Hub repository that cannot be reached (offline here): the page opens
    on the error banner, and an upload is answered with the same message, once."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("AFFECT_MODEL", "nobody/unreachable-model")
    demo = demo_app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True,
                            **demo_app.launch_options())
    # a second page of the module's browser (one Playwright session per module)
    error_page = page.context.browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        error_page.goto(url)
        banner = error_page.locator("#model-error")
        banner.wait_for(timeout=60_000)
        text = banner.inner_text()
        assert "No model loaded" in text and "nobody/unreachable-model" in text and "AFFECT_MODEL" in text
        face = tmp_path / "face.jpg"
        Image.fromarray(astronaut(256)).save(face)
        error_page.locator("#image-input input[type=file]").set_input_files(str(face))
        toast = error_page.locator(".toast-body")
        toast.first.wait_for(timeout=30_000)  # the message comes back as a toast, next to the banner
        error_page.wait_for_timeout(800)
        assert "could not be loaded" in toast.first.inner_text()
        assert toast.count() == 1  # one message per upload
    finally:
        error_page.screenshot(path=str(OUTPUT / "demo_no_model.png"))
        error_page.close()
        demo.close()
