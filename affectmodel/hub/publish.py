"""``python -m affectmodel publish RUN --repo OWNER/NAME``: publish a training run as a Hub model.

The upload folder (weights, model config, model card, metrics, training configuration, history)
is assembled atomically, then the repository is created if needed and the folder is uploaded in
one commit. The model's ONNX graphs (``model.onnx``, ``model.int8.onnx`` and their record
``onnx.json``, written by ``python -m affectmodel export``) go with it when the record vouches for
them; ``--onnx`` (and ``--int8``) exports them first when they are missing or stale.
``--dry-run DIR`` writes the folder and uploads nothing. The token comes from huggingface_hub's
usual places (``HF_TOKEN``, the login cache); it is never printed, written to a file or echoed in
an error.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import write_json_atomic
from ..locking import ensure_not_being_written
from ..records import (
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_CONFIG_FILE,
    MODEL_ONNX_FILE,
    MODEL_ONNX_INT8_FILE,
    MODEL_WEIGHTS_FILE,
    ONNX_RECORD_FILE,
    TRAINING_CONFIG_FILE,
    read_run,
)
from ..study import run_summary
from ..summaries import SUMMARY_FILE, save_summary
from .card import build_model_card
from .loading import is_repo_id, load_folder


class PublishError(ValueError):
    """Publishing failed (bad input, refused by the Hub, no network); the message holds no token."""


@dataclass
class PublishResult:
    repo_id: str
    files: list[str]
    uploaded: bool
    folder: Path | None = None        # the assembled folder (dry run); gone after an upload
    revision: str | None = None
    repo_type: str = "model"
    commit_url: str | None = None

    @property
    def url(self) -> str:
        from huggingface_hub import constants
        prefix = "spaces/" if self.repo_type == "space" else ""
        return f"{constants.ENDPOINT}/{prefix}{self.repo_id}"


# ------------------------------------------------------------------ atomic folders

def build_folder_atomically(dest: str | Path, fill: Callable[[Path], None]) -> Path:
    """Run ``fill(tmp)`` in a hidden folder next to ``dest``, then rename it to ``dest``.

    An interrupted build leaves no half-written ``dest`` (a killed one leaves a hidden
    ``.<dest>.*.partial`` folder, removed by the next build of ``dest``). An existing ``dest`` is replaced only
    when it is empty or holds nothing but the names the new folder has (an earlier build);
    anything else is refused so a wrong path never deletes unrelated files."""
    dest = Path(dest).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Leftovers of a build of this folder that was killed (SIGKILL, power loss) before it could clean up.
    for stale in [*dest.parent.glob(f".{dest.name}.*.partial"), *dest.parent.glob(f".{dest.name}.*.old")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        fill(tmp)
        if dest.exists() and not dest.is_dir():
            raise PublishError(f"{dest} exists and is not a folder")
        if dest.is_dir() and any(dest.iterdir()):
            new_names = {p.name for p in tmp.iterdir()}
            stray = sorted(p.name for p in dest.iterdir() if p.name not in new_names)
            if stray:
                raise PublishError(f"{dest} already exists and holds other files ({', '.join(stray[:5])}); "
                                   "choose a new or empty folder")
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)  # rename onto a missing or empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def folder_listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------ model folder

def check_repo_id(repo_id: str, what: str = "--repo") -> str:
    if not is_repo_id(repo_id):
        raise PublishError(f"{what} {repo_id!r} is not a Hub repository id of the form OWNER/NAME "
                           "(letters, digits, '-', '_', '.')")
    return repo_id


# Options that name places on the researcher's machine: published as their last path component only.
_LOCAL_PATH_OPTIONS = ("data", "out", "init", "pretrained_from")


def public_training_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's training configuration without local directory names (a public repository should
    not reveal ``/home/<user>/...``); ``random``/``imagenet`` and run names stay as they are."""
    public = dict(config)
    for key in _LOCAL_PATH_OPTIONS:
        value = public.get(key)
        if isinstance(value, str) and ("/" in value or "\\" in value):
            public[key] = Path(value.replace("\\", "/")).name
    return public


def onnx_graphs(model_dir: Path, export: bool = False, int8: bool = False) -> list[str]:
    """The file names of ``model_dir``'s ONNX graphs that its record vouches for (graph and weights
    hashes; :func:`affectmodel.inference.onnx_engine.verified_graph`). With ``export``, a graph that is
    missing or stale (fp32, and int8 with ``int8``) is exported first (checked against PyTorch)."""
    from ..inference.onnx_engine import PRECISIONS, OnnxModelError, verified_graph

    def vouched() -> list[str]:
        names = []
        for precision, name in PRECISIONS.items():
            try:
                verified_graph(model_dir, precision)
            except OnnxModelError:
                continue
            names.append(name)
        return names

    names = vouched()
    wanted = [MODEL_ONNX_FILE] + ([MODEL_ONNX_INT8_FILE] if int8 else [])
    if export and not set(wanted) <= set(names):
        from ..inference.export import export_onnx
        export_onnx(model_dir, int8=int8)
        names = vouched()
    return names


def assemble_model_folder(run_dir: str | Path, repo_id: str, dest: str | Path, onnx: bool = False,
                          int8: bool = False) -> list[str]:
    """Write the folder that a publish uploads; returns its file names.

    The run must be complete and its model must load strictly, so a broken checkpoint is never
    published. Verified ONNX graphs of the model go with it (with ``onnx``, exported first if
    missing; ``int8`` adds the int8 graph)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    run = read_run(run_dir)
    model_dir = run.model_dir
    if not (model_dir / MODEL_WEIGHTS_FILE).is_file():
        raise PublishError(f"{run_dir} has no {model_dir.name}/{MODEL_WEIGHTS_FILE}: the run is incomplete")
    load_folder(model_dir)  # strict: raises a readable ModelSourceError (a ValueError) on mismatch
    graphs = onnx_graphs(model_dir, export=onnx or int8, int8=int8)
    card = build_model_card(run, repo_id)
    metrics = {**run.metrics, "hub_repo": repo_id}
    # Per-video sums instead of val_predictions.npz (frame labels are not ours to publish): the
    # study's intervals over videos, from the Hub, equal those from the run folder.
    summary = run_summary(run)

    def fill(tmp: Path) -> None:
        shutil.copyfile(model_dir / MODEL_WEIGHTS_FILE, tmp / MODEL_WEIGHTS_FILE)
        shutil.copyfile(model_dir / MODEL_CONFIG_FILE, tmp / MODEL_CONFIG_FILE)
        for name in [*graphs, ONNX_RECORD_FILE] if graphs else []:
            shutil.copyfile(model_dir / name, tmp / name)
        (tmp / "README.md").write_text(str(card), encoding="utf-8")
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
        (tmp / TRAINING_CONFIG_FILE).write_text(json.dumps(public_training_config(run.config), indent=2) + "\n",
                                                encoding="utf-8")
        if (run_dir / HISTORY_FILE).is_file():
            shutil.copyfile(run_dir / HISTORY_FILE, tmp / HISTORY_FILE)
        if summary is not None:
            save_summary(tmp / SUMMARY_FILE, summary)

    return folder_listing(build_folder_atomically(dest, fill))


# ------------------------------------------------------------------ upload

def _secrets(token: str | None) -> list[str]:
    from huggingface_hub import get_token
    try:
        stored = get_token() if token is None else None
    except Exception:  # noqa: BLE001 - e.g. a failed OIDC exchange: then there is no stored token to hide
        stored = None
    found = [token, stored, os.environ.get("HF_TOKEN")]
    return [s for s in found if s and len(s) >= 4]


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _network_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError
    errors: list[type[BaseException]] = [HfHubHTTPError, OSError]
    for module in ("httpx2", "httpx"):  # huggingface_hub 2.x uses httpx2, 1.x httpx
        try:
            errors.append(__import__(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _describe_hub_error(error: BaseException, step: str, repo_id: str, secrets: list[str]) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    if isinstance(error, OfflineModeIsEnabled) or isinstance(error.__cause__, OfflineModeIsEnabled):
        return (f"cannot {step}: offline mode is on (HF_HUB_OFFLINE is set); unset it to publish, "
                "or use --dry-run DIR to only write the folder")
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            return (f"the Hub refused to {step} {repo_id} (HTTP {status}): log in with `hf auth login` or "
                    "set HF_TOKEN to a token with write access to that namespace")
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        return _scrub(f"the Hub refused to {step} {repo_id} (HTTP {status}): {first_line}", secrets)
    return _scrub(f"could not reach the Hub at {constants.ENDPOINT} to {step} {repo_id}: "
                  f"{error.__class__.__name__}: {error}", secrets)


def upload_folder(folder: Path, repo_id: str, *, repo_type: str = "model", private: bool = False,
                  revision: str | None = None, token: str | None = None, api: Any = None,
                  commit_message: str, space_sdk: str | None = None) -> str | None:
    """Create the repository (and branch) if needed and upload ``folder`` in ONE commit.

    Returns the commit URL. Every failure becomes a :class:`PublishError` without the token."""
    from huggingface_hub import HfApi
    api = api if api is not None else HfApi(token=token)
    secrets = _secrets(token)
    step = "create the repository"
    try:
        extra = {"space_sdk": space_sdk} if space_sdk else {}
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **extra)
        if revision:
            step = f"create branch {revision!r} in"
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        step = "upload to"
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                                 revision=revision, commit_message=commit_message)
    except _network_errors() as e:
        raise PublishError(_describe_hub_error(e, step, repo_id, secrets)) from None
    return getattr(info, "commit_url", None)


def record_hub_repo(run_dir: Path, repo_id: str, revision: str | None) -> None:
    """Note the published repository in the run's metrics.json (atomic write)."""
    path = run_dir / METRICS_FILE
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["hub_repo"] = repo_id
    if revision:
        metrics["hub_revision"] = revision
    else:
        metrics.pop("hub_revision", None)
    write_json_atomic(path, metrics)


def publish_run(run_dir: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                dry_run_dir: str | Path | None = None, token: str | None = None, api: Any = None,
                onnx: bool = False, int8: bool = False) -> PublishResult:
    """Publish a run folder as Hub model repository ``repo_id`` (or only write it, with
    ``dry_run_dir``). ``api`` replaces ``HfApi(token=token)``, e.g. in tests."""
    check_repo_id(repo_id)
    run_dir = Path(run_dir)
    ensure_not_being_written(run_dir)  # a run still being trained would publish a mix of two states
    if dry_run_dir is not None:
        files = assemble_model_folder(run_dir, repo_id, dry_run_dir, onnx=onnx, int8=int8)
        return PublishResult(repo_id, files, uploaded=False, folder=Path(dry_run_dir), revision=revision)
    with tempfile.TemporaryDirectory(prefix="affectmodel-publish-") as tmp:
        folder = Path(tmp) / repo_id.split("/")[-1]
        files = assemble_model_folder(run_dir, repo_id, folder, onnx=onnx, int8=int8)
        commit_url = upload_folder(folder, repo_id, private=private, revision=revision, token=token, api=api,
                                   commit_message=f"Publish affectmodel run {run_dir.name}")
    record_hub_repo(run_dir, repo_id, revision)
    return PublishResult(repo_id, files, uploaded=True, revision=revision, commit_url=commit_url)


# ------------------------------------------------------------------ command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="run folder (runs/SUITE/RUN) with metrics.json and model/")
    parser.add_argument("--repo", required=True, metavar="OWNER/NAME", help="Hub model repository id")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", metavar="BRANCH", help="upload to this branch (created if needed)")
    parser.add_argument("--dry-run", metavar="DIR", dest="dry_run",
                        help="only write the folder that would be uploaded to DIR; upload nothing")
    parser.add_argument("--onnx", action="store_true",
                        help="include the ONNX graph (model.onnx, for fast CPU inference without PyTorch), exported "
                             "into the run's model/ first if it has no verified one (a verified one is always "
                             "included)")
    parser.add_argument("--int8", action="store_true", help="with --onnx: the int8 graph too")


def print_result(result: PublishResult, what: str) -> None:
    if result.uploaded:
        where = result.url + (f" (branch {result.revision})" if result.revision else "")
        print(f"published {what} to {where} in one commit" + (f": {result.commit_url}" if result.commit_url else ""))
    else:
        print(f"dry run: wrote {len(result.files)} files to {result.folder}; nothing was uploaded")
    for name in result.files:
        print(f"  {name}")


def run(args: argparse.Namespace) -> int:
    result = publish_run(args.run_dir, args.repo, private=args.private, revision=args.revision,
                         dry_run_dir=args.dry_run, onnx=args.onnx or args.int8, int8=args.int8)
    print_result(result, f"run {Path(args.run_dir).name}")
    return 0
