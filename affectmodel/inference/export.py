"""``python -m affectmodel export MODEL --format onnx [--int8]``: the model as an ONNX graph for fast
CPU inference, checked against PyTorch on the spot.

Writes ``model.onnx`` (fp32) and, with ``--int8``, ``model.int8.onnx`` (statically quantised: int8
convolutions with per-channel weights, activations calibrated on faces; the heads stay in float)
next to the model's ``config.json``, then ``onnx.json``, the record of the check. Input size,
normalisation and heads come from the config; the batch size is dynamic (input ``images``
``(batch, 3, S, S)``, one output per task: expression and AU logits, valence/arousal).

The check (on faces generated here, never the calibration faces):

* fp32: the largest absolute difference of expression and AU probabilities and of valence/arousal
  from PyTorch must be at most :data:`FP32_MAX_DIFF` (1e-4);
* int8: the same top expression as PyTorch on at least :data:`INT8_MIN_AGREEMENT` (95 %) of the
  faces, and valence/arousal within :data:`INT8_MAX_VA_DIFF` (0.05) on every face.

A graph that fails is not installed (the command says which figure failed and exits 2); the figures
of a passing one are printed and kept in ``onnx.json``, which the ONNX engine reads before it uses a
graph (:mod:`.onnx_engine`). Exporting needs the ``export`` extra (``onnx``, ``onnxscript``, for
PyTorch's ``torch.export``-based exporter and onnxruntime's quantisation tools); running the graph
needs only ``onnxruntime``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import write_json_atomic
from ..model_config import ModelConfig
from ..records import ONNX_RECORD_FILE
from .onnx_engine import (
    INPUT_NAME,
    PRECISIONS,
    RECORD_FORMAT,
    OnnxModelError,
    activate,
    check_signature,
    file_sha256,
    open_session,
    probe_outputs,
    read_record,
    weights_file,
)
from .predictor import preprocess_crops

if TYPE_CHECKING:
    from ..model import AffectModel

FORMATS = ("onnx",)
FP32_MAX_DIFF = 1e-4
INT8_MIN_AGREEMENT = 0.95
INT8_MAX_VA_DIFF = 0.05
CHECK_FACES = 96          # generated faces the export is checked on
CALIBRATION_FACES = 160   # generated faces the int8 activation ranges are calibrated on (other faces)
CHECK_SEED, CALIBRATION_SEED = 7001, 9001
MAX_CALIBRATION_IMAGES = 1000
BATCH = 32


class ExportError(ValueError):
    """The export failed or its check did not pass; one line, nothing installed."""


@dataclass
class GraphCheck:
    """How one exported graph compares with PyTorch on the check faces."""

    precision: str
    faces: int
    max_diff: dict[str, float]           # per task: largest |ONNX - torch| of probabilities / VA
    mean_diff: dict[str, float]
    top_expression_agreement: float | None
    passed: bool
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{k} {v:.2g}" for k, v in self.max_diff.items()]
        text = f"{self.precision} vs torch on {self.faces} generated faces: largest difference " + ", ".join(parts)
        if self.top_expression_agreement is not None:
            text += f"; same top expression on {self.top_expression_agreement:.1%}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"faces": self.faces, "max_abs_diff": self.max_diff, "mean_abs_diff": self.mean_diff,
                "top_expression_agreement": self.top_expression_agreement,
                "criteria": criteria(self.precision)}


def criteria(precision: str) -> dict[str, float]:
    if precision == "fp32":
        return {"max_abs_diff": FP32_MAX_DIFF}
    return {"min_top_expression_agreement": INT8_MIN_AGREEMENT, "max_va_abs_diff": INT8_MAX_VA_DIFF}


@dataclass
class ExportResult:
    folder: Path
    files: list[Path]
    checks: list[GraphCheck]
    seconds: float


# ------------------------------------------------------------------ faces to check and calibrate on

def generated_faces(count: int, size: int, seed: int) -> list[np.ndarray]:
    """``count`` faces of the synthetic benchmark's generator (each a new identity, expression, pose,
    lighting, background, occluder), as ``size`` x ``size`` uint8 RGB crops. Deterministic."""
    from ..data.synthetic import sample_sequence

    rng = np.random.default_rng(seed)
    faces = []
    for _ in range(count):
        sequence = sample_sequence(frames=1, rng=rng)
        faces.append(np.asarray(sequence.render(0, size).convert("RGB"), dtype=np.uint8))
    return faces


def image_crops(folder: Path, size: int, limit: int = MAX_CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Face crops for calibration from a folder of images (searched recursively; at most ``limit``
    images, spread evenly over the sorted file list). An image up to twice the model's input size is
    taken as a face crop as it is (e.g. Aff-Wild2's aligned frames); in a larger one (a photo) the
    faces are detected and aligned as inference does."""
    from ..images import ImageLoadError, is_image_file, load_image
    from .align import face_crop
    from .faces import create_detector

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"--calibration {folder}: no such folder (give a folder of face crops)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise ExportError(f"--calibration {folder}: no images found")
    picked = [files[i] for i in np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)]
    crops: list[np.ndarray] = []
    detector = None
    for path in dict.fromkeys(picked):
        try:
            image = load_image(path)
        except ImageLoadError as e:
            print(f"warning: calibration image skipped: {e}", file=sys.stderr)
            continue
        if max(image.shape[:2]) <= 2 * size:
            crops.append(image)
            continue
        detector = detector or create_detector("retinaface")
        crops += [face_crop(image, face, size) for face in detector.detect(image)]
    if not crops:
        raise ExportError(f"--calibration {folder}: no face crops or faces in its images")
    return crops


# ------------------------------------------------------------------ export and check

def heads_module(model: AffectModel):
    """The network as the graph shows it: one output per task, in the config's task order."""
    import torch

    class Heads(torch.nn.Module):
        def __init__(self, inner: AffectModel):
            super().__init__()
            self.inner = inner

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.inner(images)
            return tuple(out[task] for task in self.inner.tasks)

    return Heads(model).eval()


def export_fp32(model: AffectModel, path: Path) -> None:
    """``model`` as an ONNX graph with a dynamic batch (PyTorch's ``torch.export``-based exporter)."""
    import torch

    try:
        import onnxscript  # noqa: F401 - the exporter needs it; say so plainly instead of deep inside torch
    except ImportError:
        raise ExportError("exporting to ONNX needs the export extra: pip install 'onnx>=1.17,<2' "
                          "'onnxscript>=0.7,<0.8' (or pip install -e '.[export]')") from None
    size = model.config.input_size
    example = torch.zeros(2, 3, size, size)  # batch 2: torch.export specialises a batch of 1
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(heads_module(model), (example,), str(path), input_names=[INPUT_NAME],
                          output_names=list(model.tasks), dynamic_shapes={"images": {0: batch}},
                          external_data=False, dynamo=True, optimize=True, verbose=False)


def check_initializers(path: Path) -> None:
    """Refuse a graph whose stored weights hold NaN or inf."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    for tensor in graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ExportError(f"the exported graph holds NaN or inf weights ({tensor.name}); nothing was installed")


def _outputs(run: Callable[[np.ndarray], dict[str, np.ndarray]], crops: Sequence[np.ndarray],
             config: ModelConfig) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(crops), BATCH):
        out = activate(run(preprocess_crops(crops[start:start + BATCH], config)))
        for key, values in out.items():
            parts.setdefault(key, []).append(values)
    return {key: np.concatenate(values) for key, values in parts.items()}


def compare(precision: str, got: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> GraphCheck:
    """The figures of ``got`` (ONNX) against ``reference`` (PyTorch) and whether they pass."""
    max_diff, mean_diff = {}, {}
    failures = []
    for key, ref in reference.items():
        values = got[key]
        if not np.isfinite(values).all():
            failures.append(f"{key} outputs hold NaN or inf")
            max_diff[key] = mean_diff[key] = float("inf")
            continue
        diff = np.abs(values.astype(np.float64) - ref.astype(np.float64))
        max_diff[key], mean_diff[key] = float(diff.max()), float(diff.mean())
    agreement = None
    if "expr" in reference:
        agreement = float(np.mean(got["expr"].argmax(1) == reference["expr"].argmax(1)))
    if precision == "fp32":
        failures += [f"{k} differs by {v:.3g} > {FP32_MAX_DIFF:g}" for k, v in max_diff.items()
                     if not v <= FP32_MAX_DIFF]
    else:
        if agreement is not None and agreement < INT8_MIN_AGREEMENT:
            failures.append(f"same top expression on only {agreement:.1%} of faces (< {INT8_MIN_AGREEMENT:.0%})")
        if "va" in max_diff and not max_diff["va"] <= INT8_MAX_VA_DIFF:
            failures.append(f"valence/arousal differ by up to {max_diff['va']:.3f} (> {INT8_MAX_VA_DIFF:g})")
    faces = len(next(iter(reference.values())))
    return GraphCheck(precision, faces, max_diff, mean_diff, agreement, not failures, failures)


@dataclass(frozen=True)
class Int8Settings:
    """How ``quantize_int8`` makes the int8 graph (onnxruntime's static quantisation), recorded in
    ``onnx.json``. The default was chosen on held-out real faces among the alternatives each field
    names (``scripts/int8_settings.py``; figures in docs/INFERENCE.md)."""

    format: str = "qdq"              # "qdq" (QuantizeLinear/DequantizeLinear pairs) or "qoperator" (QLinearConv...)
    per_channel: bool = True         # one weight scale per output channel (else one per tensor)
    reduce_range: bool = False       # 7-bit weights (for CPUs without VNNI, whose int8 products can saturate)
    activations: str = "uint8"       # "uint8" (asymmetric ranges) or "int8" (symmetric ranges)
    method: str = "minmax"           # activation ranges: "minmax", "percentile" (99.999 %) or "entropy"
    keep_float: tuple[str, ...] = ("heads",)   # left in float: "heads" (Gemm), "first_conv", "last_block" (512-ch)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "activations": self.activations, "method": self.method, "keep_float": list(self.keep_float)}


INT8_DEFAULT = Int8Settings()


def float_nodes(graph, keep_float: Sequence[str]) -> list[str]:
    """Names of the nodes of an ONNX ``graph`` (ResNet trunk + heads) that ``keep_float`` leaves in float."""
    unknown = set(keep_float) - {"heads", "first_conv", "last_block"}
    if unknown:
        raise ValueError(f"unknown keep_float parts {sorted(unknown)}")
    weights = {t.name: list(t.dims) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    names = []
    if "heads" in keep_float:
        names += [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    if "first_conv" in keep_float:
        names += [n.name for n in convs if n.input[0] == INPUT_NAME]
    if "last_block" in keep_float and convs:
        widest = max(weights.get(n.input[1], [0])[0] for n in convs)
        names += [n.name for n in convs if weights.get(n.input[1], [0])[0] == widest]
    return names


def quantize_int8(fp32_path: Path, out_path: Path, calibration: Sequence[np.ndarray], config: ModelConfig,
                  work: Path, settings: Int8Settings = INT8_DEFAULT) -> None:
    """Static int8 quantisation: int8 weights, activations with ranges from ``calibration`` faces,
    as ``settings`` say (default: QDQ, per-channel weights, asymmetric uint8 activations with
    min/max ranges; the task heads (Gemm) stay in float)."""
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise ExportError(f"int8 quantisation needs the export extra (onnx): {e}") from None

    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    activations = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    if settings.format not in formats or settings.method not in methods or settings.activations not in activations:
        raise ValueError(f"unknown int8 settings {settings.to_dict()}")
    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    keep = float_nodes(onnx.load(str(prepared), load_external_data=False).graph, settings.keep_float)

    class Faces(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT_NAME: _nchw(preprocess_crops(calibration[i:i + BATCH], config))}
                                 for i in range(0, len(calibration), BATCH)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(prepared), str(out_path), Faces(), quant_format=formats[settings.format],
                    per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                    activation_type=activations[settings.activations], weight_type=QuantType.QInt8,
                    calibrate_method=methods[settings.method], nodes_to_exclude=keep,
                    extra_options={"CalibTensorRangeSymmetric": False,
                                   "ActivationSymmetric": settings.activations == "int8"})


def _nchw(batch_nhwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch_nhwc.transpose(0, 3, 1, 2))


def _session_run(path: Path, threads: int | None):
    session = open_session(path, threads)
    names = [o.name for o in session.get_outputs()]

    def run(batch_nhwc: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {INPUT_NAME: _nchw(batch_nhwc)}), strict=True))

    def run_nchw(batch_nchw: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {INPUT_NAME: batch_nchw}), strict=True))

    return session, run, run_nchw


def _model_folder(source: str | os.PathLike) -> tuple[Path, Path]:
    """(model folder, folder whose lock guards it: the run folder, or the model folder itself)."""
    from ..hub.loading import resolve_source

    resolved = resolve_source(source)
    if resolved.kind == "hub":
        raise ExportError(f"{source}: export writes next to the model's config.json, so it needs a local model "
                          "folder or run folder (download the repository first, e.g. `hf download OWNER/NAME "
                          "--local-dir DIR`)")
    return resolved.model_folder, Path(resolved.location)


def export_onnx(source: str | os.PathLike, int8: bool = False, calibration: str | os.PathLike | None = None,
                threads: int | None = None, log: Callable[[str], None] | None = None) -> ExportResult:
    """Export a model folder or run folder to ONNX (and int8), check it against PyTorch, install the
    graphs that pass and record their figures in ``onnx.json``. Raises :class:`ExportError` (one line)
    when a check fails; a graph that failed is not installed."""
    from ..hub.loading import load_folder
    from ..locking import run_folder_lock
    from .torch_engine import TorchEngine

    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    started = time.perf_counter()
    folder, guarded = _model_folder(source)
    with run_folder_lock(guarded, purpose="export"):
        model = load_folder(folder)  # strict: validated config, matching and finite weights
        config = model.config
        if config.temporal in ("conv", "gru"):
            raise ExportError(f"{folder}: a {config.temporal} temporal model reads windows of frames; its ONNX graph "
                              "would read one frame at a time and answer differently, so it is not exported (it "
                              "runs on the torch engine)")
        calibration_faces = None
        if int8:  # read before the slow tracing: a wrong folder fails at once
            calibration_faces = (image_crops(Path(calibration), config.input_size) if calibration is not None
                                 else generated_faces(CALIBRATION_FACES, config.input_size, CALIBRATION_SEED))
        torch_run = TorchEngine(model).run
        check_faces = generated_faces(CHECK_FACES, config.input_size, CHECK_SEED)
        reference = _outputs(torch_run, check_faces, config)
        weights = weights_file(folder)
        weights_sha = file_sha256(weights) if weights is not None else None
        entries: dict[str, dict[str, Any]] = {}
        installed: list[Path] = []
        checks: list[GraphCheck] = []
        with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=folder) as tmp:
            work = Path(tmp)
            fp32_tmp = work / PRECISIONS["fp32"]
            say(f"export: tracing the network to ONNX ({config.input_size} px, tasks {', '.join(config.tasks)}; "
                "about 10-30 s)")
            export_fp32(model, fp32_tmp)
            check_initializers(fp32_tmp)
            graphs = [("fp32", fp32_tmp)]
            if calibration_faces is not None:
                say(f"export: quantising to int8, activation ranges from {len(calibration_faces)} "
                    f"{'images of ' + str(calibration) if calibration is not None else 'generated faces'}")
                int8_tmp = work / PRECISIONS["int8"]
                quantize_int8(fp32_tmp, int8_tmp, calibration_faces, config, work)
                graphs.append(("int8", int8_tmp))
            for precision, path in graphs:
                session, run, run_nchw = _session_run(path, threads)
                check_signature(session, config, path)
                result = compare(precision, _outputs(run, check_faces, config), reference)
                checks.append(result)
                say(f"export: {result.summary()}" + ("" if result.passed else " — FAILED"))
                if not result.passed:
                    if precision == "fp32":
                        raise ExportError(f"the exported graph does not match PyTorch ({'; '.join(result.failures)}); "
                                          "nothing was installed")
                    raise ExportError(f"the int8 graph is not close enough to PyTorch ({'; '.join(result.failures)}); "
                                      f"it was not installed (the fp32 graph was checked: {checks[0].summary()}). "
                                      "Try --calibration with face crops like those the model will see")
                probe = {k: v.tolist() for k, v in probe_outputs(run_nchw, config).items()}
                del session
                entries[PRECISIONS[precision]] = {
                    "precision": precision, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                    "weights_sha256": weights_sha, "check": result.to_dict(), "probe": probe,
                    **({} if precision == "fp32" else {"quantisation": INT8_DEFAULT.to_dict()}),
                    "calibration": (None if precision == "fp32" else
                                    str(calibration) if calibration is not None else
                                    f"{CALIBRATION_FACES} generated faces (seed {CALIBRATION_SEED})"),
                }
                if precision == "fp32":  # installed now: an int8 failure below leaves a usable fp32 graph
                    _install(folder, {PRECISIONS["fp32"]: (path, entries[PRECISIONS["fp32"]])}, config)
                    installed.append(folder / PRECISIONS["fp32"])
            if int8:
                _install(folder, {PRECISIONS["int8"]: (graphs[1][1], entries[PRECISIONS["int8"]])}, config)
                installed.append(folder / PRECISIONS["int8"])
    return ExportResult(folder, installed, checks, time.perf_counter() - started)


def _install(folder: Path, graphs: dict[str, tuple[Path, dict[str, Any]]], config: ModelConfig) -> None:
    """Move checked graphs into place, then write the record (last: until it lands, the new graph's
    hash is not vouched for, so nothing half-done is ever used). Entries of graphs exported from other
    weights are dropped (and their files removed): the record vouches only for the current weights."""
    import onnxruntime

    try:
        record = read_record(folder) or {}
    except OnnxModelError:
        record = {}
    files = {name: entry for name, entry in (record.get("files") or {}).items()
             if isinstance(entry, dict) and name in PRECISIONS.values() and name not in graphs
             and (folder / name).is_file()}
    current = next(iter(graphs.values()))[1].get("weights_sha256")
    for name in [n for n, entry in files.items() if entry.get("weights_sha256") != current]:
        del files[name]
        (folder / name).unlink(missing_ok=True)
    for name, (path, entry) in graphs.items():
        os.replace(path, folder / name)
        files[name] = entry
    import torch

    write_json_atomic(folder / ONNX_RECORD_FILE, {
        "format": RECORD_FORMAT,
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, config.input_size, config.input_size],
                  "mean": config.mean, "std": config.std},
        "outputs": config.head_sizes(),
        "files": files,
        "exported_with": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    })


# ------------------------------------------------------------------ command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="model folder or run folder (the graph is written next to "
                                                       "its config.json)")
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="export format (default: %(default)s)")
    parser.add_argument("--int8", action="store_true",
                        help="also write model.int8.onnx: int8 convolutions calibrated on faces (faster on CPU; "
                             "checked: same top expression on >= 95%% of faces, valence/arousal within 0.05)")
    parser.add_argument("--calibration", metavar="DIR",
                        help="with --int8: calibrate on the faces in this folder's images (face crops such as "
                             "aligned training frames are used as they are; in photos the faces are detected and "
                             "aligned) instead of on generated faces")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for the checks")


def run(args: argparse.Namespace) -> int:
    if args.calibration is not None and not args.int8:
        raise ExportError("--calibration applies to --int8")
    result = export_onnx(args.model, int8=args.int8, calibration=args.calibration, threads=args.threads)
    for path, check in zip(result.files, result.checks, strict=True):
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): {check.summary()}")
    print(f"recorded the checks in {result.folder / ONNX_RECORD_FILE}; `predict` and the demo now run this model "
          f"on ONNX Runtime ({result.seconds:.0f} s)")
    return 0


__all__ = ["INT8_DEFAULT", "ExportError", "ExportResult", "GraphCheck", "Int8Settings", "compare", "export_onnx",
           "float_nodes", "generated_faces", "image_crops", "quantize_int8"]
