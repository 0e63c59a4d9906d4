"""Load a model from a local model folder, a run folder or a Hugging Face Hub repository id.

One entry point, :func:`load_model`, serves the CLI, the demo and library users. Weights are read
from ``model.safetensors`` (or, for old folders, ``pytorch_model.bin`` through
``torch.load(weights_only=True)``): nothing is ever unpickled. The state dict must match the
configuration exactly (strict), unlike ``PyTorchModelHubMixin.from_pretrained``'s default.

This is the ONE loader of models: the predictor, the demo, training initialisation from a folder
or run (:func:`affectmodel.initialisation.build_model`) and publishing all come here. A
model may come from a stranger's repository, so before anything large is allocated it checks
every ``config.json`` field against bounds (:class:`affectmodel.model.ModelConfig`), the label
lists against :mod:`affectmodel.tasks`, and every tensor's name and shape in the weights file's
header against the model the config describes; after reading, all weights must be finite.

Every failure raises a :class:`ModelSourceError` subclass whose message says what is wrong and
what to do about it, in one line naming the folder or file and the field.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

# torch loads only where weights are read: resolving a source, validating config.json and model_info
# serve the ONNX engine and the demo without it.
from ..model_config import CheckpointError, ModelConfig
from ..records import (
    DEFAULT_MODEL_NAME,
    METRIC_KEYS,
    METRICS_FILE,
    MODEL_CONFIG_FILE,
    MODEL_DIR,
    MODEL_WEIGHTS_FILE,
    default_model_dir,
    is_complete,
    recipe_changed,
)

LEGACY_WEIGHTS_FILE = "pytorch_model.bin"  # read with weights_only=True only
CARD_FILE = "README.md"
# "owner/name": the Hub's own rules for each part (letters, digits, - _ .; no leading/trailing - or .).
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}")

if TYPE_CHECKING:
    import torch

    from ..model import AffectModel

SourceKind = Literal["folder", "run", "hub"]
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few hundred bytes; refuse to parse a huge one


class ModelSourceError(CheckpointError, ValueError):
    """A model source cannot be loaded. Also a ``ValueError`` so the CLI prints it as one line."""


class SourceNotFoundError(ModelSourceError):
    """The source is neither an existing path nor a valid Hub repository id."""


class RepoNotFoundError(ModelSourceError):
    """The Hub repository (or the requested revision) does not exist or is not accessible."""


class MissingFileError(ModelSourceError):
    """A file the model needs is missing from the folder or repository."""


class OfflineError(ModelSourceError):
    """No network (or offline mode) and the file is not in the local Hub cache."""


class WeightsMismatchError(ModelSourceError):
    """The weights do not fit the architecture described by config.json (strict loading)."""


class InvalidModelError(ModelSourceError):
    """config.json has a field out of bounds, or the weights hold NaN/inf."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model lives: ``location`` is a folder for ``folder``/``run``, a repo id for ``hub``."""

    kind: SourceKind
    location: str
    revision: str | None = None

    @property
    def model_folder(self) -> Path:
        if self.kind == "hub":
            raise ValueError("a Hub source has no local folder before download")
        return Path(self.location) / MODEL_DIR if self.kind == "run" else Path(self.location)


def is_repo_id(text: str) -> bool:
    """``owner/name`` in the Hub's spelling (``--`` and ``..`` are forbidden there too)."""
    return bool(_REPO_ID.fullmatch(text)) and "--" not in text and ".." not in text


def resolve_source(source: str | os.PathLike, revision: str | None = None) -> ModelSource:
    """Decide whether ``source`` is a model folder, a run folder or a Hub repository id; ``default``
    names the demo's default model (:func:`affectmodel.records.default_model_dir`).

    An existing path always wins over a repo id or ``default`` of the same spelling (``runs/x`` is
    a folder if it exists)."""
    text = str(source)
    path = Path(text).expanduser()
    if text == DEFAULT_MODEL_NAME and not path.exists():
        return _default_model_source()
    if path.exists():
        if path.is_file():
            raise SourceNotFoundError(
                f"{path} is a file; pass the folder that holds {MODEL_WEIGHTS_FILE} and {MODEL_CONFIG_FILE} "
                f"(a model folder) or a run folder")
        if _has_weights(path / MODEL_DIR):
            return ModelSource("run", str(path), None)
        if _has_weights(path) or (path / MODEL_CONFIG_FILE).is_file():
            return ModelSource("folder", str(path), None)
        raise MissingFileError(
            f"{path} is neither a model folder (no {MODEL_WEIGHTS_FILE}/{MODEL_CONFIG_FILE}) nor a run folder "
            f"(no {MODEL_DIR}/{MODEL_WEIGHTS_FILE})")
    if isinstance(source, Path) or not is_repo_id(text):
        raise SourceNotFoundError(
            f"model source {text!r} does not exist as a local path and is not a Hub repository id "
            f"(expected a model folder, a run folder, or OWNER/NAME)")
    return ModelSource("hub", text, revision)


def _default_model_source() -> ModelSource:
    """``default``: the demo's default model (a run folder in the user's cache), once built."""
    folder = default_model_dir()
    if not is_complete(folder):
        raise MissingFileError(
            f"the default model is not built yet (looked in {folder}): launch the demo once "
            f"(`python app.py`) or build it with `python -m demo.default_model`, then try again")
    if recipe_changed(folder):
        raise MissingFileError(
            f"the default model in {folder} was built from an older suites/demo.toml: rebuild it with "
            f"`python -m demo.default_model --rebuild` (or launch the demo once), then try again")
    return ModelSource("run", str(folder), None)


def _has_weights(folder: Path) -> bool:
    return (folder / MODEL_WEIGHTS_FILE).is_file() or (folder / LEGACY_WEIGHTS_FILE).is_file()


# ------------------------------------------------------------------ Hub downloads

@overload
def hub_download(repo_id: str, filename: str, revision: str | None = None,
                 local_files_only: bool | None = None, required: Literal[True] = True) -> Path: ...
@overload
def hub_download(repo_id: str, filename: str, revision: str | None = None,
                 local_files_only: bool | None = None, required: bool = True) -> Path | None: ...
def hub_download(repo_id: str, filename: str, revision: str | None = None,
                 local_files_only: bool | None = None, required: bool = True) -> Path | None:
    """Download (or find in the cache) one file of a model repository.

    Errors become :class:`ModelSourceError` subclasses with readable messages; with
    ``required=False`` a file missing from the repository returns ``None`` instead."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = bool(local_files_only) or constants.is_offline_mode()
    where = f"{repo_id}" + (f" at revision {revision!r}" if revision else "")
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision,
                                    local_files_only=bool(local_files_only)))
    except GatedRepoError:
        raise RepoNotFoundError(f"Hub repository {repo_id} is gated: accept its terms on the Hub and log in "
                                f"(HF_TOKEN or `hf auth login`)") from None
    except RepositoryNotFoundError:
        raise RepoNotFoundError(f"Hub repository {repo_id} not found (or private and not accessible with "
                                f"the current login)") from None
    except RevisionNotFoundError:
        raise RepoNotFoundError(f"revision {revision!r} not found in Hub repository {repo_id}") from None
    except LocalEntryNotFoundError as e:
        # Raised when the file is neither downloadable nor cached: offline mode, local_files_only,
        # or a failed connection.
        if offline or isinstance(e.__cause__, OfflineModeIsEnabled):
            why = ("offline mode (HF_HUB_OFFLINE is set)" if constants.is_offline_mode()
                   else "local_files_only=True")
            raise OfflineError(
                f"{why} and {filename} of {where} is not in the local cache ({constants.HF_HUB_CACHE}) — "
                f"download it once with network access, or pass a local model folder") from None
        raise OfflineError(
            f"no network: could not reach {constants.ENDPOINT} and {filename} of {where} is not in the "
            f"local cache ({constants.HF_HUB_CACHE}) — check the connection, or pass a local model folder"
        ) from None
    except EntryNotFoundError:
        if not required:
            return None
        raise MissingFileError(f"{filename} is missing in Hub repository {where}") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise ModelSourceError(f"the Hub refused {filename} of {where} (HTTP {status})") from None
    except OSError as e:  # connection errors that escaped the cache fallback
        raise OfflineError(f"no network: could not download {filename} of {where}: "
                           f"{e.__class__.__name__}") from None


def hub_model_folder(repo_id: str, revision: str | None = None, local_files_only: bool | None = None,
                     weights: bool = True, optional: tuple[str, ...] = ()) -> Path:
    """Download config.json, the weights (unless ``weights`` is false: an engine that does not read
    them) and those of the ``optional`` files the repository has; returns their cache folder."""
    config_path = hub_download(repo_id, MODEL_CONFIG_FILE, revision, local_files_only)
    where = repo_id + (f" at revision {revision!r}" if revision else "")
    found = []
    if weights:
        weights_path = hub_download(repo_id, MODEL_WEIGHTS_FILE, revision, local_files_only, required=False)
        if weights_path is None:
            weights_path = hub_download(repo_id, LEGACY_WEIGHTS_FILE, revision, local_files_only, required=False)
        if weights_path is None:
            raise MissingFileError(f"{MODEL_WEIGHTS_FILE} is missing in Hub repository {where}")
        found.append(weights_path)
    for name in optional:
        path = hub_download(repo_id, name, revision, local_files_only, required=False)
        if path is not None:
            found.append(path)
    if any(path.parent != config_path.parent for path in found):  # all come from one snapshot folder
        raise ModelSourceError(f"{repo_id}: config and weights resolved to different revisions")
    return config_path.parent


def model_folder(source: str | os.PathLike, revision: str | None = None, local_files_only: bool | None = None,
                 weights: bool = True, optional: tuple[str, ...] = ()) -> Path:
    """The local folder of a model folder, a run folder (its ``model/``) or a Hub repository (the
    snapshot with config.json, the weights unless ``weights`` is false, and the ``optional`` files
    the repository has)."""
    resolved = resolve_source(source, revision)
    if resolved.kind == "hub":
        return hub_model_folder(resolved.location, revision, local_files_only, weights, optional)
    if revision:
        raise ModelSourceError(f"revision {revision!r} only applies to Hub repositories, "
                               f"not to the local folder {resolved.location}")
    return resolved.model_folder


# ------------------------------------------------------------------ loading

def read_model_config(folder: Path) -> ModelConfig:
    """The validated config of a model folder (every field checked; see :class:`ModelConfig`)."""
    path = folder / MODEL_CONFIG_FILE
    if not path.is_file():
        raise MissingFileError(f"{path} is missing: a model folder needs {MODEL_CONFIG_FILE} next to "
                               f"{MODEL_WEIGHTS_FILE}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidModelError(f"{path} is {path.stat().st_size} bytes; a model config is a few hundred")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelSourceError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or "tasks" not in data:
        raise ModelSourceError(f"{path} is not an affectmodel model config (no 'tasks' entry)")
    try:
        config = ModelConfig(**{k: v for k, v in data.items() if k in ModelConfig.__dataclass_fields__})
    except (TypeError, ValueError, KeyError) as e:
        raise InvalidModelError(f"{path} describes no valid model: {e}") from None
    labels = data.get("labels")
    if labels is not None:
        # Derived, but it must agree with this package's task definitions for the configured tasks:
        # a file claiming other labels would have its outputs read under the wrong names.
        if not isinstance(labels, dict):
            raise InvalidModelError(f"{path}: field 'labels' must map task names to label lists")
        wrong = [k for k in config.tasks if k in labels and labels[k] != config.labels[k]]
        if wrong:
            raise InvalidModelError(f"{path}: field 'labels' for {', '.join(wrong)} does not match the task "
                                    f"definitions (expected {config.labels[wrong[0]]})")
    return config


def read_weights_file(path: Path, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    """The one state-dict reader: ``.safetensors``, or a torch file through ``weights_only=True``
    (a ``{"state_dict": ...}`` wrapper is unwrapped). Tensors only; all must be finite."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file not found: {path}")
    state: object  # torch.load gives whatever the file holds: checked below
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device=str(map_location))
        else:
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt header, pickled objects refused, truncated file...
        raise ModelSourceError(f"cannot read weights from {path}: {e.__class__.__name__}: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelSourceError(f"{path} does not hold a plain state dict of tensors")
    check_finite(state, path)
    return state


def check_finite(state: dict[str, torch.Tensor], where: Path | str) -> None:
    """Refuse weights with NaN or inf (they give NaN outputs that look like answers)."""
    import torch

    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InvalidModelError(f"weights in {where} are not finite: {key} holds NaN or inf values")


def _weights_path(folder: Path) -> Path:
    for name in (MODEL_WEIGHTS_FILE, LEGACY_WEIGHTS_FILE):
        if (folder / name).is_file():
            return folder / name
    raise MissingFileError(f"{folder} has no {MODEL_WEIGHTS_FILE}")


def read_state_dict(folder: Path, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    """Tensors only: the folder's safetensors, or a legacy ``.bin`` through ``weights_only=True``."""
    return read_weights_file(_weights_path(folder), map_location)


def check_weights_header(path: Path, expected: dict[str, tuple[int, ...]], config: ModelConfig) -> None:
    """Names and shapes from a safetensors header (no tensor is read) against the model the config
    describes: a file of huge or unexpected tensors is refused before it is allocated."""
    if path.suffix != ".safetensors":
        return  # legacy torch files have no separate header; read_weights_file checks them after reading
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            # safe_open is not iterable: .keys() is its only way to list the tensors
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # noqa: BLE001 - not a safetensors file, or a damaged header
        raise ModelSourceError(f"cannot read weights from {path}: {e.__class__.__name__}: {e}") from None
    tasks = ", ".join(config.tasks)
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        parts = [f"missing {_describe_keys(missing)}" if missing else "",
                 f"unexpected {_describe_keys(unexpected)}" if unexpected else ""]
        raise WeightsMismatchError(f"weights in {path.parent} do not match its config (tasks {tasks}): "
                                   + "; ".join(p for p in parts if p))
    wrong = [f"{k} {list(shapes[k])} (expected {list(expected[k])})" for k in expected if shapes[k] != expected[k]]
    if wrong:
        raise WeightsMismatchError(f"weights in {path.parent} do not match its config (tasks {tasks}, "
                                   f"head sizes {config.head_sizes()}): {_describe_keys(wrong, 2)}")


def _describe_keys(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_folder(folder: Path, map_location: str = "cpu") -> AffectModel:
    """Strictly load a model folder (config.json + weights) into an ``AffectModel`` in eval mode,
    validating it first (see the module docstring)."""
    import torch

    from ..model import AffectModel

    folder = Path(folder)
    config = read_model_config(folder)
    weights = _weights_path(folder)
    # Built on the meta device: no time spent on a random initialisation that the weights replace.
    with torch.device("meta"):
        model = AffectModel(config)
    check_weights_header(weights, {k: tuple(v.shape) for k, v in model.state_dict().items()}, config)
    state = read_weights_file(weights, map_location)
    try:
        # strict=False so that mismatches are reported below with the keys named
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as e:  # shape mismatches raise even when not strict
        raise WeightsMismatchError(f"weights in {folder} do not match its config "
                                   f"(tasks {', '.join(config.tasks)}): {e}") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        parts = [f"missing {_describe_keys(missing)}" if missing else "",
                 f"unexpected {_describe_keys(unexpected)}" if unexpected else ""]
        raise WeightsMismatchError(
            f"weights in {folder} do not match its config (tasks {', '.join(config.tasks)}): "
            + "; ".join(p for p in parts if p))
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):  # defensive: nothing left unloaded
        raise WeightsMismatchError(f"weights in {folder} leave part of the model uninitialised")
    return model.to(map_location).eval()


def load_model(source: str | os.PathLike, revision: str | None = None, local_files_only: bool | None = None,
               map_location: str = "cpu") -> AffectModel:
    """Load a model from a model folder, a run folder (its ``model/``) or a Hub repo ``owner/name``.

    ``revision`` (branch, tag or commit) applies to Hub repositories only. ``local_files_only``
    (or ``HF_HUB_OFFLINE=1``) reads the Hub cache and never the network. The model is returned in
    eval mode. Raises a :class:`ModelSourceError` subclass on any failure."""
    return load_folder(model_folder(source, revision, local_files_only), map_location)


# ------------------------------------------------------------------ model information

def _read_json_if_present(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in METRIC_KEYS
            if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool)}


def _card_metrics(card_path: Path | None) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics and data set from a model card's model-index (used when metrics.json is absent)."""
    if card_path is None or not card_path.is_file():
        return {}, {}
    from huggingface_hub import ModelCard
    try:
        card = ModelCard.load(card_path, ignore_metadata_errors=True)
    except Exception:  # noqa: BLE001 - an unreadable card just means no metrics to show
        return {}, {}
    from .model_index import metrics_from_card
    return metrics_from_card(card)


def _optional_download(repo_id: str, filename: str, revision: str | None,
                       local_files_only: bool | None) -> Path | None:
    """A file that only adds information: absent from the repo, or offline and not cached -> None."""
    try:
        return hub_download(repo_id, filename, revision, local_files_only, required=False)
    except OfflineError:
        return None


def model_info(source: str | Path, revision: str | None = None,
               local_files_only: bool | None = None) -> dict[str, Any]:
    """Facts about a model for an "About" page: where it comes from, its tasks, its training data
    and validation metrics (from ``metrics.json``, or the card's model-index)."""
    from huggingface_hub import constants

    resolved = resolve_source(source, revision)
    info: dict[str, Any] = {"source": str(source), "kind": resolved.kind, "revision": revision}
    if resolved.kind == "hub":
        repo = resolved.location
        folder = hub_model_folder(repo, revision, local_files_only, weights=False)
        metrics_path = _optional_download(repo, METRICS_FILE, revision, local_files_only)
        card_path = None if metrics_path else _optional_download(repo, CARD_FILE, revision, local_files_only)
        info["card_url"] = f"{constants.ENDPOINT}/{repo}" + (f"/tree/{revision}" if revision else "")
    else:
        folder = resolved.model_folder
        # A run keeps metrics.json above model/; a published folder keeps it beside the weights.
        candidates = [Path(resolved.location) / METRICS_FILE, folder.parent / METRICS_FILE]
        metrics_path = next((p for p in candidates if p.is_file()), None)
        card_path = folder / CARD_FILE
    config = read_model_config(folder)
    metrics = _read_json_if_present(metrics_path)
    recorded = metrics.get("dataset")
    dataset: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    values = _numeric_metrics(metrics)
    if not metrics:
        values, dataset = _card_metrics(card_path)
    info.update({
        "tasks": list(config.tasks),
        "expression_space": config.expression_space if "expr" in config.tasks else None,
        "input_size": config.input_size,
        "dataset": dataset.get("name"),
        "split": dataset.get("split"),
        "synthetic": bool(dataset.get("synthetic", False)),
        "metrics": values,
    })
    if metrics.get("hub_repo"):
        info["hub_repo"] = metrics["hub_repo"]
    return info
