"""Gradio demo: expressions, action units and valence/arousal for images, videos and the webcam.

A thin UI over :mod:`affectmodel.inference`; the figures come from :mod:`demo.charts`.

    python -m demo.app                       # default model (built on first launch), 127.0.0.1:7860
    python -m demo.app --model runs/suite/run --port 7861
    AFFECT_MODEL=owner/name python -m demo.app --host 0.0.0.0
    python -m demo.app --engine onnx-int8    # or AFFECT_ENGINE; default: ONNX when the model has a verified
                                             # model.onnx (python -m affectmodel export), else PyTorch

Stable API endpoints (``gradio_client``; every output is named, see ``API_GUIDE``):
``/predict_image`` (an image file -> annotated image, ..., ``predictions`` JSON ``{"faces": [...]}``)
and ``/predict_video`` (a video file -> annotated H.264 video, CSV of per-frame predictions, ...).

A model that cannot be loaded from ``$AFFECT_MODEL`` or the default model does not stop the app:
the page opens on a message saying what failed and which variable to set, and every endpoint
answers with that message (a Space always opens). An explicit ``--model`` that cannot be loaded is
refused at the command line instead (exit 2): the person who typed it is at the terminal.
"""
from __future__ import annotations

from affectmodel.runtime import configure_openmp

configure_openmp()  # before torch loads (through affectmodel.inference): see affectmodel/runtime.py

import argparse
import json
import logging
import os
import sys
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from affectmodel.hub.loading import model_info
from affectmodel.images import frame_count
from affectmodel.inference import (
    ImageLoadError,
    LiveFaceWindow,
    Predictor,
    VideoLoadError,
    VideoOptions,
    draw_predictions,
    flatten_record,
    largest_face,
    load_image,
    numbered,
    predict_video,
    probe_video,
    top_expression,
)
from affectmodel.inference.engines import ENGINE_ENV, ENGINES
from affectmodel.tasks import AU_DESCRIPTIONS, AU_NAMES, VA_DESCRIPTIONS, get_label_space

from . import charts
from .default_model import MODEL_ENV, ModelChoice, choose_model

log = logging.getLogger("affectmodel.demo")
ComponentT = TypeVar("ComponentT", bound=gr.components.Component)


EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
# Limits that keep one CPU process responsive for several users.
MAX_FILE_SIZE = "50mb"             # any upload (enforced by Gradio before our code runs)
MAX_IMAGE_PIXELS = 25_000_000      # decoded image size (decompression bombs included)
MAX_VIDEO_SECONDS = 60.0
MAX_VIDEO_PIXELS = 1920 * 1088     # per frame
MIN_VIDEO_SIDE = 16                # narrower videos cannot hold a detectable face
CONCURRENCY = {"image": 2, "video": 1, "webcam": 2}
QUEUE_SIZE = 64                    # waiting requests beyond this are told the demo is busy (a
                                   # waiting request holds only its uploaded file: 50 image + 5
                                   # video requests at once all get served; see docs/RELIABILITY.md)
WEBCAM_INTERVAL_S = 0.35           # a few frames per second on CPU
WEBCAM_TIME_LIMIT_S = 180
WEBCAM_SESSIONS = 32               # causal temporal models: webcam windows kept, one per browser session


@dataclass
class DemoModel:
    """The loaded model and what the pages say about it."""

    predictor: Predictor
    info: dict[str, Any]

    @property
    def au_thresholds(self) -> dict[str, float]:
        # A model without the AU head has no AU labels but still 12 default thresholds.
        return dict(zip(self.predictor.labels.get("au", []), map(float, self.predictor.au_thresholds),
                        strict=False))


def load_demo_model(model_source: str | ModelChoice | None, engine: str | None = None) -> DemoModel:
    choice = model_source if isinstance(model_source, ModelChoice) else choose_model(model_source)
    source = choice.source
    # The library decides the detection scale (affectmodel.inference.faces) and, by default, the engine:
    # ONNX Runtime when the model folder holds a verified model.onnx (a Space without PyTorch), else PyTorch.
    predictor = Predictor(source, engine=engine or os.environ.get(ENGINE_ENV) or "auto")
    try:
        info = model_info(source)
    except ValueError as e:  # facts for the About page are optional; the model itself loaded
        info = {"source": str(source), "error": str(e)}
    info.setdefault("tasks", list(predictor.tasks))
    info["choice"] = choice.describe()
    info["engine"] = predictor.engine_name
    return DemoModel(predictor, info)


@dataclass(frozen=True)
class ModelFailure:
    """Why no model could be loaded; the page and every endpoint say it."""

    source: str | None
    reason: str

    def message(self) -> str:
        what = f"The model {self.source!r} could not be loaded" if self.source else "No model could be loaded"
        return (f"{what}: {self.reason}. Set {MODEL_ENV} (a Space variable, or the environment) to a model "
                f"folder, a run folder or a Hub id OWNER/NAME that this server can reach, or unset it to use "
                f"the default demo model; then restart the app.")


def try_load_demo_model(model_source: str | None, engine: str | None = None) -> DemoModel | ModelFailure:
    """The model, or what went wrong: any failure (unreachable Hub, broken folder, a default model
    that does not build) becomes a :class:`ModelFailure` so that the app still opens."""
    source = model_source or os.environ.get(MODEL_ENV) or None
    try:
        return load_demo_model(model_source, engine)
    except Exception as e:  # noqa: BLE001 - whatever the cause, the page must open and say it
        reason = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        return ModelFailure(source, reason)


def refusing(handler, failure: ModelFailure, outputs: int = 0):
    """``handler``'s signature (so the API documents the same parameters), answering every call
    with why there is no model. With ``outputs``, an empty first argument (the page clearing a
    selector) is answered with that many empty outputs instead of a second copy of the message."""
    import functools

    @functools.wraps(handler)
    def refuse(*args, **kwargs):
        if outputs and not args[0]:
            return (None,) * outputs
        raise user_error(failure.message(), title="No model loaded")
    return refuse


def launch_line(loaded: DemoModel | ModelFailure) -> str:
    """What the console says at launch: the model in use, where it lives, built or reused."""
    if isinstance(loaded, ModelFailure):
        return f"affectmodel demo: NO MODEL. {loaded.message()} The page opens and shows this message."
    return (f"affectmodel demo: model {loaded.info.get('choice') or loaded.info.get('source')} "
            f"(engine {loaded.info.get('engine', 'torch')})")


# ------------------------------------------------------------------ input component

def _refused_address(host: str | None) -> str | None:
    """Why a URL's host is never fetched, decided without any network call: no host, or a
    loopback, private or link-local address (what Gradio's own fetch refuses too, after asking DNS)."""
    import ipaddress

    if not host:
        return "the URL names no host"
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return f"{host} is this server itself, which the demo never fetches from"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a host name: Gradio resolves it and checks every address
    if not address.is_global:
        return (f"{host} is a local or private address, which the demo never fetches from (it would let "
                "a caller reach the server's own network)")
    return None


def _fetch_failure(error: Exception) -> str:
    """Gradio's download error, as a reason a person can act on."""
    import httpx

    text = str(error)
    if text.startswith("Unable to resolve hostname"):
        host = text.removeprefix("Unable to resolve hostname ").split(":", 1)[0]
        return f"the host name {host} could not be resolved"
    if text.startswith("Hostname") and text.endswith("failed validation"):
        host = text.split()[1]
        return f"{host} resolves only to local or private addresses, which the demo never fetches from"
    if text.startswith("Failed to download file. Status code:"):
        return f"the server answered HTTP {text.rsplit(':', 1)[1].strip()}"
    if isinstance(error, httpx.TimeoutException):
        return "the server did not answer in time"
    if isinstance(error, httpx.ConnectError):
        return f"could not connect ({text or 'connection failed'})"
    if isinstance(error, httpx.HTTPError):
        return f"the download failed ({error.__class__.__name__}: {text})"
    return text or error.__class__.__name__


def fetches_urls(component: type[ComponentT]) -> type[ComponentT]:
    """Class decorator for the input components. A URL given to an endpoint (gradio_client's
    ``handle_file("https://...")``) is downloaded by Gradio before any handler runs, protected
    against server-side request forgery (no loopback, private or link-local address; every redirect
    checked again). A URL that could not be fetched gave Gradio's generic "upstream app has raised
    an exception" and a server traceback. The same download, and a message naming the URL and why,
    with no traceback; a downloaded file over the upload limit (``max_file_size``) is refused and
    deleted like an upload over it. (A decorator, not a base class: Gradio copies the body and the
    bases of these classes into a generated ``app.pyi``.)"""
    from urllib.parse import urlparse

    from gradio.context import LocalContext
    from gradio_client.utils import is_http_url_like

    download = component.async_move_resource_to_block_cache

    async def move_resource_to_block_cache(self, url_or_file_path):
        if not is_http_url_like(url_or_file_path):
            return await download(self, url_or_file_path)
        url = str(url_or_file_path)
        reason = _refused_address(urlparse(url).hostname)
        if reason is None:
            try:
                path = await download(self, url)
            except Exception as e:  # noqa: BLE001 - any failed download is the caller's input, said plainly
                reason = _fetch_failure(e)
            else:
                limit = getattr(LocalContext.blocks.get(None), "max_file_size", None)
                if path is None or limit is None or os.path.getsize(path) <= limit:
                    return path
                size = os.path.getsize(path)
                Path(path).unlink(missing_ok=True)
                reason = f"the file is {size / 1e6:.1f} MB, over this demo's limit of {limit / 1e6:.0f} MB for any file"
        log.warning("URL input not fetched: %s: %s", url, reason)
        raise user_error(f"Could not fetch {url}: {reason}.", title="Cannot fetch this URL")

    setattr(component, "async_move_resource_to_block_cache", move_resource_to_block_cache)  # noqa: B010
    return component


@fetches_urls
class ImageFileInput(gr.Image):
    """``gr.Image`` that hands over the uploaded file untouched, so that every image is decoded
    by :func:`affectmodel.inference.load_image` (size limit, truncation and non-image checks with
    readable messages) instead of failing inside Gradio's preprocessing."""

    is_template = True  # rendered by the frontend's ordinary Image component

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        try:
            return super().preprocess(payload)
        except Exception as e:  # noqa: BLE001 - an undecodable data URL is the user's input, not a bug
            raise user_error(f"This is not a readable image ({e.__class__.__name__}).") from None


@fetches_urls
class VideoFileInput(gr.Video):
    is_template = True  # rendered by the frontend's ordinary Video component


@fetches_urls
class WebcamInput(gr.Image):
    is_template = True


@fetches_urls
class PredictionsFile(gr.File):
    is_template = True


# Components below subclass ONE Gradio component each: Gradio names a template component after its
# direct base class, in the page (which Svelte component renders it) and in view_api().

class FaceChoice(gr.Radio):
    """The face selector of the image tab. Its choices change with every image, so the API takes
    any name (a string, not an enum of the empty initial choices) and the handler checks it
    against the predictions it is given."""

    is_template = True  # rendered by the frontend's ordinary Radio component
    API_DESCRIPTION = "'Face 1', 'Face 2', ...: the face numbers of the predictions (1-based, left to right)"

    def preprocess(self, payload):
        return None if payload is None else str(payload)

    def api_info(self) -> dict[str, Any]:
        return {"type": "string", "description": self.API_DESCRIPTION}


class TrackChoice(gr.Dropdown):
    """The face-track selector of the video tab: any name in the API, checked by the handler."""

    is_template = True
    API_DESCRIPTION = "'Face #1', 'Face #2', ...: a track_id of the predictions CSV"

    def preprocess(self, payload):
        return None if payload is None else str(payload)

    def api_info(self) -> dict[str, Any]:
        return {"type": "string", "description": self.API_DESCRIPTION}


class IntegerSlider(gr.Slider):
    """A slider of whole numbers (``int`` in the API). Gradio refuses a value out of range with a
    message (good) and a server traceback (noise: a wrong API argument is the caller's mistake):
    same message, no traceback."""

    is_template = True  # rendered by the frontend's ordinary Slider component (precision=0: int in the API)

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error as e:
            raise user_error(str(e.message), title="Bad input") from None


def user_error(message: str, title: str = "Error") -> gr.Error:
    """A message for the person using the demo (shown in the page and returned through the API);
    not a server fault, so no traceback in the log."""
    return gr.Error(message, title=title, print_exception=False)


def answers_errors(what: str):
    """Wrap an endpoint so that an unexpected failure on a user's input becomes a message in the
    page and the API (one log line, no traceback) instead of Gradio's generic error."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:  # noqa: BLE001 - the input is the likely cause; say what failed
                name = next((Path(a).name for a in args if isinstance(a, str) and os.path.sep in a), None)
                detail = _readable(e, next((a for a in args if isinstance(a, str)), None)) or e.__class__.__name__
                log.warning("%s failed%s: %s: %s", fn.__name__, f" on {name}" if name else "",
                            e.__class__.__name__, detail)
                raise user_error(f"Could not analyse {name or 'this input'}: {detail}", title=what) from None
        return handler
    return wrap


def _readable(error: Exception, path: str | None) -> str:
    """The error message without the server's temp folder (the user knows the file by its name)."""
    message = str(error)
    if path:
        message = message.replace(str(path), Path(path).name)
    return message


# ------------------------------------------------------------------ image

def _face_names(faces: list[dict]) -> list[str]:
    return [f"Face {i + 1}" for i in range(len(faces))]


def _face_views(model: DemoModel, faces: list[dict], index: int):
    """Expression label, AU chart and circumplex for one face (the circumplex marks all faces)."""
    if not faces:
        return None, None, charts.circumplex_chart([])
    face = faces[min(max(index, 0), len(faces) - 1)]
    name = _face_names(faces)[index]
    label = face.get("expression")
    aus = charts.au_chart(face["aus"], model.au_thresholds, title=f"Action units — {name}") if "aus" in face else None
    points = [(n, f["valence"], f["arousal"]) for n, f in zip(_face_names(faces), faces, strict=True) if "valence" in f]
    va = charts.circumplex_chart(points) if points else None
    return label, aus, va


def _image_result(faces: list[dict], size: tuple[int, int], seconds: float, message: str | None) -> dict:
    out: dict[str, Any] = {"faces": numbered(faces), "image_size": list(size), "seconds": round(seconds, 3)}
    if message:
        out["message"] = message
    return out


def _summary(faces: list[dict], seconds: float) -> str:
    if not faces:
        return "**No face found.** Try a larger, frontal, well-lit face."
    parts = []
    for name, face in zip(_face_names(faces), faces, strict=True):
        top = top_expression(face)
        text = f"**{name}**" + (f": {top[0]} ({top[1]:.0%})" if top else "")
        if "valence" in face:
            text += f", valence {face['valence']:+.2f}, arousal {face['arousal']:+.2f}"
        parts.append(text)
    return f"{len(faces)} face{'s' if len(faces) > 1 else ''} found in {seconds:.2f} s — " + "; ".join(parts)


def empty_charts() -> dict[str, Any]:
    """What each chart shows before it holds a result: its title and what will appear (page only;
    the API answers None where there is nothing to draw)."""
    return {"au": charts.placeholder_chart("Action units", "one bar per action unit, for the selected face"),
            "va": charts.circumplex_chart([]),
            "va_time": charts.placeholder_chart("Valence and arousal over time", "one line each, per face track",
                                                width=charts.TIMELINE_WIDTH),
            "expr_time": charts.placeholder_chart("Expression probabilities over time",
                                                  "one line per expression, per face track",
                                                  width=charts.TIMELINE_WIDTH)}


def clear_image_outputs():
    """Empties the image tab's outputs (a page event; the API never sees it)."""
    empty = empty_charts()
    return None, gr.update(choices=[], value=None, visible=False), "", None, empty["au"], empty["va"], None


def face_choices(result: dict | None):
    """The face selector for the predictions of /predict_image (a page event after it)."""
    names = _face_names((result or {}).get("faces", []) if isinstance(result, dict) else [])
    return gr.update(choices=names, value=names[0] if names else None, visible=len(names) > 1)


def _image_file(image_path: str, rgb: np.ndarray) -> str:
    """The annotated image as a JPEG of its own next to the upload. Gradio would store a returned
    array under a name made from its content, so identical results of concurrent requests (the same
    photo, an example) rewrite one file while another request is still downloading it: the
    download breaks ("Too little data for declared Content-Length", found by the load test)."""
    path = _output_path(image_path, "-annotated.jpg")
    Image.fromarray(rgb).save(path, format="JPEG", quality=90)
    return str(path)


def make_image_handlers(model: DemoModel):
    @answers_errors("Cannot analyse this image")
    def predict_image(image_path: str | None):
        if not image_path:
            return None, "", None, None, None, {"faces": [], "message": "no image"}
        start = time.perf_counter()
        try:
            rgb = load_image(image_path, max_pixels=MAX_IMAGE_PIXELS)
            faces = model.predictor.predict_image(rgb)
        except (ImageLoadError, FileNotFoundError) as e:
            raise user_error(_readable(e, image_path), title="Cannot read this image") from None
        seconds = time.perf_counter() - start
        notes = []
        frames = frame_count(image_path)
        if frames > 1:  # an animated GIF / WebP / PNG: one image here, every frame in the Video tab
            notes.append(f"First frame of {frames} analysed (an animated image); the Video tab analyses every frame.")
            log.info("predict_image on %s: first frame of %d analysed", Path(image_path).name, frames)
        if not faces:
            notes.append("No face found in this image.")
            gr.Warning("No face was found in this image. Try a larger, frontal, well-lit face.",
                       title="No face")
        annotated = _image_file(image_path, draw_predictions(rgb, numbered(faces)) if faces else rgb)
        label, aus, va = _face_views(model, faces, 0)
        result = _image_result(faces, (rgb.shape[1], rgb.shape[0]), seconds, " ".join(notes) or None)
        summary = _summary(faces, seconds) + (f"\n\n_{notes[0]}_" if frames > 1 else "")
        return annotated, summary, label, aus, va, result

    @answers_errors("Cannot show this face")
    def select_face(name: str | None, result: dict | None):
        if result is not None and not isinstance(result, dict):
            raise user_error("result must be the predictions JSON of /predict_image.", title="Bad input")
        faces = [{k: v for k, v in f.items() if k != "face"} for f in (result or {}).get("faces", [])]
        names = _face_names(faces)
        if name is not None and name not in names:
            known = ", ".join(names) if names else "none"
            raise user_error(f"{name!r} is not a face of these predictions (faces: {known}).", title="Bad input")
        return _face_views(model, faces, names.index(name) if name in names else 0)

    return predict_image, select_face


# ------------------------------------------------------------------ video

def _track_names(table: pd.DataFrame) -> list[str]:
    if table.empty or "track_id" not in table:
        return []
    return [f"Face #{int(t)}" for t in sorted(table["track_id"].unique())]


def _track_charts(table: pd.DataFrame, track: str | None):
    names = _track_names(table)
    if not names:
        return None, None
    if track is not None and track not in names:
        raise user_error(f"{track!r} is not a face track of these predictions (tracks: {', '.join(names)}).",
                         title="Bad input")
    track_id = int((track or names[0]).split("#")[1])
    rows = table[table["track_id"] == track_id].sort_values("time_s")
    va = (charts.timeline_chart(rows, ["valence", "arousal"], f"Valence and arousal — Face #{track_id}",
                                "value", (-1, 1)) if "valence" in rows else None)
    expr_cols = [c for c in rows.columns if c.startswith("expr_")]
    if expr_cols:
        probs = rows[["time_s", *expr_cols]].rename(columns=lambda c: c.removeprefix("expr_"))
        expr = charts.timeline_chart(probs, [c.removeprefix("expr_") for c in expr_cols],
                                     f"Expression probabilities — Face #{track_id}", "probability", (0, 1))
    else:
        expr = None
    return va, expr


def _every_text(every: int) -> str:
    if every == 1:
        return "every frame"
    suffix = {2: "nd", 3: "rd"}.get(every, "th")
    return f"every {every}{suffix} frame"


def _output_path(video_path: str, suffix: str) -> Path:
    """A fresh file next to the upload: Gradio's cache folder, cleaned with it."""
    return Path(video_path).parent / f"{Path(video_path).stem}-{uuid.uuid4().hex[:8]}{suffix}"


def make_video_handlers(model: DemoModel):
    @answers_errors("Cannot analyse this video")
    def predict_video_file(video_path: str | None, every: int = 2, smoothing_window: int = 5,
                           progress=gr.Progress()):  # noqa: B008 - Gradio injects its tracker through this default
        if not video_path:
            raise user_error("Upload a video first.", title="No video")
        try:
            info = probe_video(video_path)
        except (VideoLoadError, FileNotFoundError) as e:
            raise user_error(_readable(e, video_path), title="Cannot read this video") from None
        if info.duration_s is not None and info.duration_s > MAX_VIDEO_SECONDS:
            raise user_error(f"The video is {info.duration_s:.0f} s long; this demo analyses videos of up to "
                           f"{MAX_VIDEO_SECONDS:.0f} s. Trim it, or run `python -m affectmodel predict` locally.",
                           title="Video too long")
        if min(info.width, info.height) <= 0:
            raise user_error(f"{Path(video_path).name}: not a readable video (its stream has no frame size).",
                             title="Cannot read this video")
        if min(info.width, info.height) < MIN_VIDEO_SIDE:
            raise user_error(f"{Path(video_path).name} is {info.width}x{info.height} pixels: too small to hold a "
                             f"face (this demo needs at least {MIN_VIDEO_SIDE} pixels per side).",
                             title="Video too small")
        if info.width * info.height > MAX_VIDEO_PIXELS:
            raise user_error(f"The video is {info.width}x{info.height}; this demo accepts up to 1920x1080. "
                           "Downscale it first.", title="Video too large")
        every, window = max(1, int(every)), max(1, int(smoothing_window))
        temporal = model.predictor.temporal  # its own window over each track: no smoothing on top
        options = VideoOptions(every=every, smoothing="mean" if window > 1 and not temporal else None,
                               smooth_window=window,
                               max_frames=int(MAX_VIDEO_SECONDS * max(info.fps, 1)) + 1)
        annotated = _output_path(video_path, "-annotated.mp4")
        progress(0, desc="Analysing frames")
        start = time.perf_counter()
        try:
            rows = predict_video(model.predictor, video_path, options, annotate_to=annotated,
                                 progress=lambda f: progress(f, desc="Analysing frames"))
        except (VideoLoadError, FileNotFoundError) as e:
            raise user_error(_readable(e, video_path), title="Cannot read this video") from None
        seconds = time.perf_counter() - start
        if not rows:
            raise user_error(f"No face was found in {Path(video_path).name} ({_every_text(every)} checked). "
                           "Try a video with a larger, frontal face.", title="No face")
        table = pd.DataFrame([flatten_record(r) for r in rows])
        csv_path = _output_path(video_path, "-predictions.csv")
        table.to_csv(csv_path, index=False, float_format="%.6g")
        names = _track_names(table)
        va, expr = _track_charts(table, names[0])
        frames = table["frame"].nunique()
        config = model.predictor.config
        smoothing = (f"temporal model: {config.temporal} over {config.window} frames of each track"
                     if temporal else f"moving average over {window} frames" if window > 1 else "no smoothing")
        summary = (f"**{len(names)} face track{'s' if len(names) != 1 else ''}** in {frames} frames with a face "
                   f"({_every_text(every)}, {smoothing}); {seconds:.1f} s.")
        return str(annotated), str(csv_path), summary, va, expr

    @answers_errors("Cannot show this track")
    def select_track(track: str | None, csv_path: str | None):
        if not csv_path:
            return None, None
        try:
            table = pd.read_csv(csv_path)
        except (ValueError, UnicodeDecodeError) as e:
            raise user_error(f"{Path(csv_path).name} is not a predictions CSV of /predict_video "
                             f"({e.__class__.__name__}).", title="Bad input") from None
        if not {"track_id", "time_s"} <= set(table.columns):
            raise user_error(f"{Path(csv_path).name} is not a predictions CSV of /predict_video "
                             "(no track_id/time_s columns).", title="Bad input")
        return _track_charts(table, track)

    return predict_video_file, select_track


def track_choices(csv_path: str | None):
    """The track selector for the CSV of /predict_video (a page event after it)."""
    try:
        names = _track_names(pd.read_csv(csv_path)) if csv_path else []
    except (OSError, ValueError, UnicodeDecodeError):
        names = []
    return gr.update(choices=names, value=names[0] if names else None, visible=len(names) > 1)


# ------------------------------------------------------------------ webcam

def make_webcam_handler(model: DemoModel):
    windows: OrderedDict[str, LiveFaceWindow] = OrderedDict()

    def live_face(rgb: np.ndarray, session: str) -> dict | None:
        predictor = model.predictor
        config = predictor.config
        detected = predictor.detect(rgb)
        window = windows.pop(session, None) or LiveFaceWindow(config.window)
        windows[session] = window
        while len(windows) > WEBCAM_SESSIONS:  # the oldest sessions' windows go
            windows.popitem(last=False)
        if not detected:
            window.reset()
            return None
        face = max(detected, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        features = predictor.features(predictor.crops(rgb, [face]))
        outputs = predictor.window_outputs(window.push(face.box, features[0])[None], config.window - 1)
        return predictor.to_records(outputs, [face])[0]

    @answers_errors("Cannot analyse this frame")
    def predict_webcam_frame(frame: np.ndarray | None, request: gr.Request | None = None):
        if frame is None:
            return None, None, None, "Waiting for the camera…"
        start = time.perf_counter()
        rgb = load_image(frame)
        config = model.predictor.config
        # A causal temporal model reads the last frames of the face (per browser session); a
        # bidirectional one would need frames that have not come yet, so it reads each frame alone.
        streaming = model.predictor.temporal and config.causal
        if streaming:
            face = live_face(rgb, getattr(request, "session_hash", None) or "local")
            faces = [face] if face is not None else []
        else:
            faces = model.predictor.predict_image(rgb)
        if not faces:
            return None, None, None, "No face in view."
        face = largest_face(faces)  # the person in front of the camera
        label, aus, va = _face_views(model, [face], 0)
        top = top_expression(face)
        status = f"{top[0]} ({top[1]:.0%})" if top else "Face found"
        reading = f"over the last {config.window} frames" if streaming else "per frame"
        return label, aus, va, f"{status} · {reading} · {1000 * (time.perf_counter() - start):.0f} ms per frame"

    return predict_webcam_frame


# ------------------------------------------------------------------ About and banner

def synthetic_banner(info: dict[str, Any]) -> str:
    if info.get("synthetic"):
        return ("<div class='affect-banner'><b>Trained on synthetic faces.</b> This model learned from the "
                "toolkit's procedurally drawn benchmark, not from real people. Its predictions on real faces "
                "are <b>not meaningful</b>: the demo shows how the pipeline works, not what anyone feels. "
                "Load a model trained on Aff-Wild2 with <code>--model</code>.</div>")
    if not info.get("dataset"):
        return ("<div class='affect-banner'><b>Unknown training data.</b> This model has no training record "
                "(metrics.json or model card); treat its predictions as untested.</div>")
    return ""


def failure_banner(failure: ModelFailure) -> str:
    import html
    return ("<div class='affect-banner affect-error'><b>No model loaded.</b> "
            f"{html.escape(failure.message())}</div>")


def failure_markdown(failure: ModelFailure) -> str:
    return "\n".join(["## The model", "", f"**No model loaded.** {failure.message()}", "",
                       f"- On a Hugging Face Space: *Settings → Variables and secrets*, set `{MODEL_ENV}`, "
                       "then restart the Space.",
                       f"- Locally: `{MODEL_ENV}=OWNER/NAME .venv/bin/python -m demo.app`, or "
                       "`.venv/bin/python -m demo.app --model runs/quick/multi`.",
                       f"- Without `{MODEL_ENV}` the demo builds (once) and shows the default model trained on "
                       "the synthetic benchmark."])


# The answer of /predict_image (its `predictions` output), as JSON Schema; the README shows it too.
PREDICTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["faces"],
    "properties": {
        "faces": {"type": "array", "items": {
            "type": "object",
            "required": ["face", "box", "score"],
            "properties": {
                "face": {"type": "integer", "minimum": 1, "description": "1-based, left to right"},
                "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                        "description": "x1, y1, x2, y2 in pixels of the uploaded image"},
                "score": {"type": "number", "description": "face detector confidence"},
                "expression": {"type": "object", "additionalProperties": {"type": "number"},
                               "description": "probability per expression label (sums to 1)"},
                "aus": {"type": "object", "additionalProperties": {"type": "number"},
                        "description": "probability per action unit (AU1 ... AU26)"},
                "aus_active": {"type": "object", "additionalProperties": {"type": "boolean"},
                               "description": "probability >= the model's threshold for that unit"},
                "valence": {"type": "number", "minimum": -1, "maximum": 1},
                "arousal": {"type": "number", "minimum": -1, "maximum": 1},
            }}},
        "image_size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
                       "description": "width, height"},
        "seconds": {"type": "number"},
        "message": {"type": "string", "description": "set when there is nothing to show (no face, no image)"},
    },
}

API_GUIDE = """## Use it from Python

Every endpoint and output is named; `Client(URL).view_api()` lists them. Errors (an unreadable file,
no face, no model loaded) raise `gradio_client.exceptions.AppError` with the message the page shows.

```python
from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860")          # or the Space id, e.g. "OWNER/affect-demo"
(detected_faces, summary, expression, action_units,
 valence_and_arousal, predictions) = client.predict(handle_file("photo.jpg"), api_name="/predict_image")
for f in predictions["faces"]:
    print(f["face"], f["box"], max(f["expression"], key=f["expression"].get), f["valence"], f["arousal"])

(annotated_video, predictions_per_frame_csv, summary,
 valence_and_arousal_over_time, expressions_over_time) = client.predict(
    handle_file("clip.mp4"), 2, 5, api_name="/predict_video")  # every 2nd frame, smoothing window 5
```

Faces are numbered from 1, left to right: the `face` field of `predictions`, the `#1`, `#2` captions on
the image and the `face` column of `python -m affectmodel predict`'s CSV use the same numbers.
`client.predict("Face 2", predictions, api_name="/select_face")` returns that face's expression,
action units and valence/arousal charts. `predictions_per_frame_csv` has one row per analysed frame
and face track: `frame`, `time_s`, `track_id` (from 1; it follows a face from frame to frame), the box
`x1 y1 x2 y2`, `expression`, `expr_<label>` probabilities, one column per action unit, `valence`,
`arousal`. The `predictions` answer of `/predict_image` follows this JSON Schema:

```json
""" + json.dumps(PREDICTIONS_SCHEMA, indent=1) + """
```
"""


ENGINE_TEXT = {"torch": "PyTorch",
               "onnx": "ONNX Runtime, `model.onnx` (checked against PyTorch when exported)",
               "onnx-int8": "ONNX Runtime, int8 `model.int8.onnx` (checked against PyTorch when exported: "
                            "the same top expression on at least 95 % of faces, valence/arousal within 0.05)"}


def about_markdown(info: dict[str, Any], predictor: Predictor) -> str:
    tasks = info.get("tasks") or list(predictor.tasks)
    where = {"hub": "Hugging Face Hub repository", "run": "training run folder", "folder": "model folder"}
    lines = ["## The model", "",
             f"- **Source:** `{info.get('source')}` ({where.get(str(info.get('kind')), 'model')})"
             + (f", revision `{info['revision']}`" if info.get("revision") else ""),
             f"- **Tasks:** {', '.join(tasks)}",
             f"- **Engine:** {ENGINE_TEXT.get(predictor.engine_name, predictor.engine_name)}"]
    if info.get("card_url"):
        lines.append(f"- **Model card:** {info['card_url']}")
    dataset = info.get("dataset")
    if dataset:
        lines.append(f"- **Trained on:** {dataset}" + (" — *a synthetic benchmark*" if info.get("synthetic") else ""))
    else:
        lines.append("- **Trained on:** unknown (no training record found)")
    metrics = info.get("metrics") or {}
    if metrics:
        split = f" ({info['split']} split)" if info.get("split") else ""
        lines += ["", f"Validation results{split}:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in metrics.items()]
    if info.get("synthetic"):
        lines += ["", "> **This model was trained on synthetic faces.** Its numbers above describe the synthetic "
                  "benchmark only; on photographs of real people its predictions are not meaningful."]
    lines += ["", "## What the outputs mean", ""]
    if "expr" in tasks:
        space = get_label_space(info.get("expression_space") or "abaw8")
        lines.append(f"**Expression**: probabilities over {len(space)} categories ({', '.join(space.labels)}) "
                     "that sum to 1 — how much the face *looks like* each prototype, not what the person feels.")
        lines.append("")
    if "au" in tasks:
        lines += ["**Action units** (FACS): independent probabilities that a facial muscle movement is present. "
                  "A unit counts as active when its probability reaches its threshold (tuned on validation data "
                  "when the model stores thresholds, else 0.5).", "", "| AU | movement | threshold |", "|---|---|---|"]
        thresholds = dict(zip(AU_NAMES, map(float, predictor.au_thresholds), strict=True))
        lines += [f"| {au} | {AU_DESCRIPTIONS[au]} | {thresholds.get(au, 0.5):.2f} |" for au in AU_NAMES]
        lines.append("")
    if "va" in tasks:
        lines += ["**Valence and arousal**: two numbers in [-1, 1] that place the expression on Russell's "
                  "circumplex:", "",
                  f"- *valence* — {VA_DESCRIPTIONS['valence']};",
                  f"- *arousal* — {VA_DESCRIPTIONS['arousal']}.", ""]
    lines += ["## Limitations", "",
              "- Facial expressions are not emotions. A smile can be polite, a frown can be concentration; "
              "what a face shows depends on culture, context and the person.",
              "- Models inherit the biases of their training data (who is filmed, in which settings, who "
              "annotated them). Accuracy differs across age, skin tone, pose, lighting and occlusion.",
              "- Scores on in-the-wild benchmarks such as Aff-Wild2 are modest; single frames are noisy, "
              "which is why the video view offers temporal smoothing.",
              "- **Do not use these outputs to make decisions about people** (hiring, policing, health, "
              "education, credit, ...). This is a research and teaching tool.",
              "- Images and videos are processed in memory on this server and are not kept beyond "
              "Gradio's temporary cache."]
    return "\n".join(lines)


CSS = """
.affect-banner {background: #fff4e5; border: 1px solid #f0a04b; border-left: 6px solid #e4572e;
  border-radius: 8px; padding: 10px 14px; color: #5a3100; font-size: 0.95rem; line-height: 1.45;}
.affect-banner code {background: #ffe2c2; color: #5a3100;}
.affect-error {background: #fdecea; border-color: #e4572e; color: #611a15;}
.affect-header h1 {margin-bottom: 0.1rem;}
.affect-header p {color: var(--body-text-color-subdued); margin-top: 0;}
.affect-summary {min-height: 2.2rem;}
footer {visibility: visible;}
"""
THEME = gr.themes.Soft(primary_hue="orange", secondary_hue="blue", neutral_hue="slate")


def launch_options(max_file_size: str | int = MAX_FILE_SIZE) -> dict[str, Any]:
    """Options for ``demo.launch``: the look (Gradio 6 takes theme and CSS here, not in
    ``gr.Blocks``) and the upload size limit."""
    return {"theme": THEME, "css": CSS, "max_file_size": max_file_size}


# ------------------------------------------------------------------ layout

def build_demo(model_source: str | DemoModel | ModelFailure | None = None, *,
               queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The demo app for a model folder, run folder or Hub id (default: ``AFFECT_MODEL``, else the
    default model, built on first use), or for an already loaded model (:func:`try_load_demo_model`).
    Launch with ``demo.launch(**launch_options())``.

    A model that cannot be loaded gives the same app with a message in place of results: the page
    says what failed and which variable to set, and every endpoint answers with that message.
    ``queue_size`` requests may wait; beyond that the queue answers "busy" instead of piling up
    work (and memory) on one CPU model."""
    loaded = (model_source if isinstance(model_source, (DemoModel, ModelFailure))
              else try_load_demo_model(model_source))
    failure = loaded if isinstance(loaded, ModelFailure) else None
    # Without a model the handlers are built only for their signatures: refusing() answers every call.
    model = loaded if isinstance(loaded, DemoModel) else cast(DemoModel, None)
    predict_image, select_face = make_image_handlers(model)
    predict_video_file, select_track = make_video_handlers(model)
    predict_webcam_frame = make_webcam_handler(model)
    if failure:
        predict_image, predict_video_file, predict_webcam_frame = (
            refusing(fn, failure) for fn in (predict_image, predict_video_file, predict_webcam_frame))
        select_face, select_track = refusing(select_face, failure, 3), refusing(select_track, failure, 2)
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
    video_examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.mp4"))

    with gr.Blocks(title="affectmodel — facial affect demo", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# Facial affect analysis\nExpressions, facial action units and valence/arousal from one "
                    "ResNet-18 network. Upload a photo, a video, or use your webcam.",
                    elem_classes="affect-header")
        banner = failure_banner(failure) if failure else synthetic_banner(model.info)
        if banner:
            gr.HTML(banner, elem_id="model-error" if failure else "model-banner")

        empty = empty_charts()
        with gr.Tabs():
            with gr.Tab("Image", id="image"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1):
                        image_in = ImageFileInput(type="filepath", sources=["upload", "clipboard", "webcam"],
                                                  label="Photo (upload, paste or take one)", height=360,
                                                  elem_id="image-input")
                        image_examples = gr.Examples(examples=examples, inputs=image_in, label="Examples",
                                                     examples_per_page=6, cache_examples=False,
                                                     elem_id="image-examples") if examples else None
                    with gr.Column(scale=1):
                        image_out = gr.Image(label="Detected faces", type="numpy", format="jpeg",
                                             interactive=False, height=360, buttons=["download", "fullscreen"])
                        face_select = FaceChoice(label="Face", choices=[], visible=False)
                        image_summary = gr.Markdown(label="Summary", elem_classes="affect-summary")
                with gr.Row(equal_height=False):
                    expr_label = gr.Label(label="Expression", num_top_classes=8, scale=1)
                    au_plot = gr.Plot(empty["au"], label="Action units", scale=1, show_label=False)
                    va_plot = gr.Plot(empty["va"], label="Valence and arousal", scale=1, show_label=False)
                with gr.Accordion("All numbers (JSON)", open=False):
                    image_json = gr.JSON(label="Predictions")

            with gr.Tab("Video", id="video"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1):
                        video_in = VideoFileInput(label="Video (up to 60 s)", sources=["upload"], format=None,
                                            include_audio=True, height=320, elem_id="video-input")
                        with gr.Row():
                            every_in = IntegerSlider(1, 10, value=2, step=1, precision=0,
                                                     label="Analyse every k-th frame", info="higher = faster, coarser")
                            smooth_in = IntegerSlider(1, 15, value=5, step=1, precision=0,
                                                      label="Smoothing window (frames)",
                                                      info="1 = off; moving average per face")
                        video_button = gr.Button("Analyse video", variant="primary")
                        if video_examples:
                            gr.Examples(examples=video_examples, inputs=video_in, label="Example (synthetic faces)",
                                        cache_examples=False)
                    with gr.Column(scale=1):
                        video_out = gr.Video(label="Annotated video", interactive=False, height=320)
                        video_summary = gr.Markdown(label="Summary", elem_classes="affect-summary")
                        video_csv = PredictionsFile(label="Predictions per frame (CSV)", interactive=False,
                                                    elem_id="video-csv")
                track_select = TrackChoice(label="Face track", choices=[], visible=False)
                with gr.Row(equal_height=False):
                    va_timeline = gr.Plot(empty["va_time"], label="Valence and arousal over time", show_label=False)
                    expr_timeline = gr.Plot(empty["expr_time"], label="Expressions over time", show_label=False)

            with gr.Tab("Webcam", id="webcam"):
                gr.Markdown("Allow camera access, then press the record button: predictions update a few times "
                            "per second. Frames are analysed in memory and not stored.")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1):
                        cam_in = WebcamInput(sources=["webcam"], streaming=True, type="numpy", label="Webcam",
                                          webcam_options=gr.WebcamOptions(mirror=True), height=360)
                        cam_status = gr.Markdown("Waiting for the camera…", label="Status",
                                                 elem_classes="affect-summary")
                    cam_label = gr.Label(label="Expression", num_top_classes=4, scale=1)
                with gr.Row(equal_height=False):
                    cam_aus = gr.Plot(empty["au"], label="Action units", show_label=False)
                    cam_va = gr.Plot(empty["va"], label="Valence and arousal", show_label=False)

            with gr.Tab("About", id="about"):
                gr.Markdown(failure_markdown(failure) if failure else about_markdown(model.info, model.predictor))
                gr.Markdown(API_GUIDE)

        # The API's outputs are data only; the selectors are set by page events after them (an API
        # caller would otherwise receive Gradio's update dicts).
        image_outputs = [image_out, image_summary, expr_label, au_plot, va_plot, image_json]
        show_faces = {"fn": face_choices, "inputs": image_json, "outputs": face_select, "queue": False,
                      "show_progress": "hidden", "api_visibility": "private"}
        # .input (not .change): it fires once per upload, paste or snapshot; setting the value from
        # code (examples) does not fire it, so examples run the same function after loading.
        # Old results are cleared first, so a failed request never leaves another image's numbers behind.
        image_in.input(clear_image_outputs, outputs=[image_out, face_select, *image_outputs[1:]], queue=False,
                       show_progress="hidden", api_visibility="private").then(
            predict_image, inputs=image_in, outputs=image_outputs, api_name="predict_image",
            concurrency_limit=CONCURRENCY["image"], concurrency_id="image", show_progress_on=image_out
        ).success(**show_faces)
        if image_examples is not None:
            image_examples.load_input_event.then(predict_image, inputs=image_in, outputs=image_outputs,
                                                 api_name="predict_example", api_visibility="undocumented",
                                                 concurrency_limit=CONCURRENCY["image"], concurrency_id="image",
                                                 show_progress_on=image_out).success(**show_faces)
        face_select.change(select_face, inputs=[face_select, image_json], outputs=[expr_label, au_plot, va_plot],
                           api_name="select_face", show_progress="hidden")
        video_button.click(predict_video_file, inputs=[video_in, every_in, smooth_in],
                           outputs=[video_out, video_csv, video_summary, va_timeline, expr_timeline],
                           api_name="predict_video", concurrency_limit=CONCURRENCY["video"],
                           concurrency_id="video", show_progress_on=video_out
                           ).success(track_choices, inputs=video_csv, outputs=track_select, queue=False,
                                     show_progress="hidden", api_visibility="private")
        track_select.change(select_track, inputs=[track_select, video_csv], outputs=[va_timeline, expr_timeline],
                            api_name="select_track", show_progress="hidden")
        cam_in.stream(predict_webcam_frame, inputs=cam_in, outputs=[cam_label, cam_aus, cam_va, cam_status],
                      api_name="predict_webcam_frame", stream_every=WEBCAM_INTERVAL_S,
                      time_limit=WEBCAM_TIME_LIMIT_S, concurrency_limit=CONCURRENCY["webcam"],
                      concurrency_id="webcam", show_progress="hidden")

    demo.queue(default_concurrency_limit=1, max_size=queue_size)
    return demo


# ------------------------------------------------------------------ command line

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo.app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None,
                        help="model folder, run folder or Hub id (default: $AFFECT_MODEL, else the default "
                             "model, built on the synthetic benchmark on first launch)")
    parser.add_argument("--engine", default=None, choices=ENGINES,
                        help=f"what runs the network (default: ${ENGINE_ENV}, else auto: ONNX Runtime when the model "
                             "folder holds a verified model.onnx, else PyTorch)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; 0.0.0.0 on a Space)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    return parser.parse_args(argv)


def default_host() -> str:
    # A Space routes traffic to the container, so the app must listen on all interfaces there.
    return "0.0.0.0" if os.environ.get("SPACE_ID") else os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # huggingface_hub logs through its own handler: propagating too would print each retry twice.
    logging.getLogger("huggingface_hub").propagate = False
    # Gradio checks its own server with httpx at launch; at INFO each request would be a log line.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    loaded = try_load_demo_model(args.model, args.engine)
    if isinstance(loaded, ModelFailure) and (args.model or args.engine):  # a bad --model: one readable line, exit 2
        print(f"error: {loaded.reason}", file=sys.stderr)
        return 2
    demo = build_demo(loaded)
    port = args.port or int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    print(launch_line(loaded), flush=True)
    # quiet: no share=True hint; the app's own line says where to open it (and the public link, if any).
    _, local_url, share_url = demo.launch(server_name=args.host or default_host(), server_port=port,
                                          share=args.share, quiet=True, prevent_thread_lock=True,
                                          **launch_options())
    print(f"affectmodel demo: open {local_url}" + (f" (public link: {share_url})" if share_url else ""), flush=True)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
