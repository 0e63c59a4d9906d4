"""The ONNX Runtime engine: a model folder's ``model.onnx`` (or ``model.int8.onnx``), used only when
``onnx.json`` says that ``python -m affectmodel export`` checked it against the PyTorch model.

Nothing here imports torch: this is the model path of a torch-free install (the Space made by
``publish-space --bundle-model``).

What "verified" means, checked each time a graph is opened (one clear line when it fails):

* ``onnx.json`` lists the file with its SHA-256 and the figures of the check at export (fp32: the
  largest difference of probabilities and valence/arousal from PyTorch; int8: agreement of the top
  expression and the largest VA difference), and the SHA-256 of ``model.safetensors`` it was
  exported from. A changed or replaced graph, or weights retrained after the export, are refused.
* The graph's input and outputs match ``config.json``: ``images`` ``(batch, 3, S, S)`` float, one
  output per task with the head's size.
* A probe batch (fixed pseudo-random crops) gives finite outputs equal to those recorded at export
  (within :data:`PROBE_TOLERANCE`): a graph with NaN weights, or a runtime that computes the int8
  graph differently (some CPUs saturate int8 products), is refused instead of answering wrongly.

The session is configured like the face detector's (:mod:`.faces`): its own thread pool of
``threads`` threads (0: one per core), one inter-op thread, and workers that sleep instead of spinning
between calls, so that detection, decoding and the model do not take the cores from each other.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.normalise import normalise_into
from ..hub.loading import LEGACY_WEIGHTS_FILE, ModelSourceError
from ..model_config import ModelConfig
from ..records import MODEL_ONNX_FILE, MODEL_ONNX_INT8_FILE, MODEL_WEIGHTS_FILE, ONNX_RECORD_FILE

PRECISIONS = {"fp32": MODEL_ONNX_FILE, "int8": MODEL_ONNX_INT8_FILE}
INPUT_NAME = "images"
RECORD_FORMAT = 1
MAX_RECORD_BYTES = 1 << 20
PROBE_FACES = 4
PROBE_SEED = 20240527
# Largest difference of probe outputs (probabilities, VA) from those recorded at export. The same
# graph on the same runtime repeats them to about 1e-6; int8 kernels differ between CPU generations
# (VNNI or not) within a few hundredths.
PROBE_TOLERANCE = {"fp32": 1e-4, "int8": 0.05}
_HASH_CHUNK = 1 << 22


class OnnxModelError(ModelSourceError):
    """A model folder's ONNX graph cannot be used: missing, not verified, stale or mismatched.
    A ``ValueError`` (through :class:`ModelSourceError`), so command lines print it as one line."""


class OnnxMissingError(OnnxModelError):
    """The folder has no verified ONNX graph of that precision at all (the automatic choice then
    uses PyTorch without a warning)."""


def engine_name(precision: str) -> str:
    return "onnx" if precision == "fp32" else f"onnx-{precision}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weights_file(folder: Path) -> Path | None:
    """The folder's PyTorch weights (``model.safetensors``, or a legacy ``pytorch_model.bin``), if any:
    the graph's record names the hash of the weights it was exported from."""
    for name in (MODEL_WEIGHTS_FILE, LEGACY_WEIGHTS_FILE):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def probe_batch(input_size: int, mean, std) -> np.ndarray:
    """The probe: :data:`PROBE_FACES` fixed pseudo-random uint8 crops, normalised, NCHW float32."""
    crops = np.random.default_rng(PROBE_SEED).integers(0, 256, (PROBE_FACES, input_size, input_size, 3), np.uint8)
    batch = normalise_into(crops.astype(np.float32), mean, std)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def activate(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw head outputs -> what the predictor reports: expression softmax, AU sigmoid, VA as is
    (already bounded to [-1, 1] by the network). Float32 numpy, the same for every engine."""
    out = {}
    for key, values in raw.items():
        x = np.asarray(values, dtype=np.float32)
        if key == "expr":
            e = np.exp(x - x.max(axis=1, keepdims=True))
            x = e / e.sum(axis=1, keepdims=True)
        elif key == "au":
            x = (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)  # sigmoid without overflow
        out[key] = x
    return out


# ------------------------------------------------------------------ the record

def read_record(folder: Path) -> dict[str, Any] | None:
    """``onnx.json`` of a model folder, or ``None`` when there is none. A record that is not one
    is an :class:`OnnxModelError`."""
    path = Path(folder) / ONNX_RECORD_FILE
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise OnnxModelError(f"{path} is {path.stat().st_size} bytes; an ONNX record is a few kilobytes")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OnnxModelError(f"{path} is not valid JSON ({e}); export the model again") from None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or record.get("format") != RECORD_FORMAT:
        raise OnnxModelError(f"{path} is not an affectmodel ONNX record (format {RECORD_FORMAT}); "
                             "export the model again")
    return record


@dataclass(frozen=True)
class VerifiedGraph:
    """An ONNX graph of a model folder that its record vouches for."""

    path: Path
    precision: str
    entry: dict[str, Any]   # the record's entry for the file: sha256, checks, probe outputs


def verified_graph(folder: Path, precision: str = "fp32") -> VerifiedGraph:
    """The folder's graph of ``precision`` if ``onnx.json`` vouches for it (hashes of the graph and
    of the weights it was exported from); otherwise an :class:`OnnxModelError` saying why."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown ONNX precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    folder = Path(folder)
    name = PRECISIONS[precision]
    path = folder / name
    how = f"`python -m affectmodel export {folder}{' --int8' if precision == 'int8' else ''}`"
    record = read_record(folder)
    if not path.is_file():
        raise OnnxMissingError(f"{folder} has no {name}; make one with {how}")
    if record is None:
        raise OnnxModelError(f"{path} has no {ONNX_RECORD_FILE} beside it: it was not checked against the "
                             f"model's weights; export it with {how}")
    entry = record["files"].get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise OnnxModelError(f"{folder / ONNX_RECORD_FILE} does not list {name}: it was not checked against the "
                             f"model's weights; export it with {how}")
    if file_sha256(path) != entry["sha256"]:
        raise OnnxModelError(f"{path} is not the graph that was checked at export (its SHA-256 differs from "
                             f"{ONNX_RECORD_FILE}); export it again with {how}")
    weights = weights_file(folder)
    if weights is not None and entry.get("weights_sha256") and file_sha256(weights) != entry["weights_sha256"]:
        raise OnnxModelError(f"{path} was exported from other weights than {weights.name} (retrained or replaced "
                             f"since); export it again with {how}")
    return VerifiedGraph(path, precision, entry)


# ------------------------------------------------------------------ the engine

def session_options(threads: int | None = None):
    """Options of every session here: ``threads`` intra-op threads (``None``/0: one per core), one
    inter-op thread, no spinning between calls (see the module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or 0)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def open_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for a broken or foreign graph
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise OnnxModelError(f"onnxruntime cannot load {path}: {first[:300]}") from None


def check_signature(session, config: ModelConfig, path: Path) -> list[str]:
    """The graph's input and outputs against ``config``; returns the output names in graph order."""
    inputs = session.get_inputs()
    size = config.input_size
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(float)":
        got = ", ".join(f"{i.name} {i.type}" for i in inputs)
        raise OnnxModelError(f"{path} does not match config.json: it takes ({got}), not one float input "
                             f"{INPUT_NAME!r}")
    shape = list(inputs[0].shape)
    if len(shape) != 4 or shape[1:] != [3, size, size] or isinstance(shape[0], int):
        raise OnnxModelError(f"{path} does not match config.json: input shape {shape}, expected "
                             f"[batch, 3, {size}, {size}] with a dynamic batch")
    outputs = {o.name: o for o in session.get_outputs()}
    expected = config.head_sizes()
    if set(outputs) != set(expected):
        raise OnnxModelError(f"{path} does not match config.json: outputs {sorted(outputs)}, expected the tasks "
                             f"{sorted(expected)}")
    wrong = [f"{k} {list(outputs[k].shape)}" for k, n in expected.items()
             if len(outputs[k].shape) != 2 or outputs[k].shape[1] != n or outputs[k].type != "tensor(float)"]
    if wrong:
        raise OnnxModelError(f"{path} does not match config.json: outputs {', '.join(wrong)}, expected head sizes "
                             f"{expected} (float)")
    return [o.name for o in session.get_outputs()]


def probe_outputs(run, config: ModelConfig) -> dict[str, np.ndarray]:
    """Activated outputs of ``run`` (NCHW batch -> raw outputs) on the probe batch."""
    return activate(run(probe_batch(config.input_size, config.mean, config.std)))


class OnnxEngine:
    """``run(batch)`` on one onnxruntime session: a normalised NHWC float32 batch in, raw head
    outputs (expression and AU logits, VA) out, as :class:`~.torch_engine.TorchEngine` gives them."""

    def __init__(self, folder: str | Path, config: ModelConfig, precision: str = "fp32", threads: int | None = None):
        self.folder = Path(folder)
        self.config = config
        self.precision = precision
        self.name = engine_name(precision)
        graph = verified_graph(self.folder, precision)
        self.path = graph.path
        self.session = open_session(graph.path, threads)
        self.outputs = check_signature(self.session, config, graph.path)
        self.check_probe(graph.entry)

    def _run_nchw(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {INPUT_NAME: batch})
        return dict(zip(self.outputs, values, strict=True))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs for a normalised ``(n, S, S, 3)`` float32 batch."""
        return self._run_nchw(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32))

    def check_probe(self, entry: dict[str, Any]) -> None:
        got = probe_outputs(self._run_nchw, self.config)
        for key, values in got.items():
            if not np.isfinite(values).all():
                raise OnnxModelError(f"{self.path} gives NaN or inf {key} outputs: its weights are broken; "
                                     "refusing to use it")
        recorded = entry.get("probe")
        if not isinstance(recorded, dict) or set(recorded) != set(got):
            raise OnnxModelError(f"{self.folder / ONNX_RECORD_FILE} has no probe outputs for {self.path.name}; "
                                 "export the model again")
        tolerance = PROBE_TOLERANCE[self.precision]
        for key, values in got.items():
            try:
                expected = np.asarray(recorded[key], dtype=np.float32)
            except (TypeError, ValueError):
                expected = np.zeros(0, np.float32)
            if expected.shape != values.shape:
                raise OnnxModelError(f"{self.folder / ONNX_RECORD_FILE}: probe outputs for {key} have shape "
                                     f"{expected.shape}, the graph gives {values.shape}; export the model again")
            diff = float(np.abs(values - expected).max()) if values.size else 0.0
            if not diff <= tolerance:
                raise OnnxModelError(
                    f"{self.path} computes other {key} outputs on this machine than when it was checked "
                    f"(largest difference {diff:.3g} > {tolerance:g}; onnxruntime or CPU differ); use "
                    f"{'the fp32 graph, ' if self.precision != 'fp32' else ''}the torch engine, or export again "
                    "on this machine")


__all__ = [
    "INPUT_NAME",
    "PRECISIONS",
    "OnnxEngine",
    "OnnxMissingError",
    "OnnxModelError",
    "VerifiedGraph",
    "activate",
    "check_signature",
    "engine_name",
    "file_sha256",
    "open_session",
    "probe_batch",
    "probe_outputs",
    "read_record",
    "session_options",
    "verified_graph",
    "weights_file",
]
