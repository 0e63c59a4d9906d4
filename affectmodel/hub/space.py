"""``python -m affectmodel publish-space --repo OWNER/NAME (--model OWNER/MODEL | --bundle-model RUN)``:
the Gradio demo as a Hugging Face Space.

The Space folder holds a README whose front matter configures the Space (``sdk: gradio``, the
installed Gradio version, Python 3.11, ``app.py``, the model it shows), a small ``app.py`` that
points the demo at the model, copies of the ``demo`` and ``affectmodel`` packages (so both import
without installing anything), ``suites/demo.toml`` (the default model's recipe),
``requirements.txt`` (derived from ``pyproject.toml``, the project's one dependency list: the runtime
dependencies and the ``apps`` extra) and ``packages.txt`` (system packages).

The model is either a Hub repository (``--model``, downloaded when the Space starts) or a model
bundled into the Space itself (``--bundle-model``: a run folder, a model folder, or ``default`` for
the demo's default synthetic model, built here once if missing). A bundled Space needs no Hub model
at all and never trains anything when it restarts.

A bundled model is exported to ONNX here (``model/model.onnx``, checked against PyTorch; with
``--int8`` also the int8 graph, which the Space then runs), so the Space runs on ONNX Runtime and its
``requirements.txt`` holds no PyTorch at all. A Space that shows a Hub model (``--model``) keeps
PyTorch, as CPU-only wheels (Spaces install with ``pip install -r``, which honours
``--extra-index-url`` lines; PyTorch publishes CPU wheels, with a ``+cpu`` local version, at
:data:`TORCH_CPU_INDEX`): PyPI's Linux ``torch`` wheel pulls in the CUDA stack (triton and the
``nvidia-*`` packages, about 3.5 GB of wheels) that a CPU Space never uses.
This module never imports gradio: its version is read from the installed package metadata.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from ..inference.engines import ENGINE_ENV
from ..records import MODEL_ONNX_FILE, MODEL_ONNX_INT8_FILE
from .publish import (
    PublishError,
    PublishResult,
    build_folder_atomically,
    check_repo_id,
    folder_listing,
    onnx_graphs,
    print_result,
    upload_folder,
)

PYTHON_VERSION = "3.11"
APP_FILE = "app.py"
PACKAGES = ("affectmodel", "demo")
DEMO_SUITE = "suites/demo.toml"
BUNDLED_MODEL_DIR = "model"       # --bundle-model lands here, next to app.py
DEFAULT_MODEL = "default"         # --bundle-model default: the demo's default synthetic model
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_WHEELS = {"torch", "torchvision"}  # pinned to their +cpu builds from TORCH_CPU_INDEX
PYPROJECT = "pyproject.toml"
SPACE_EXTRAS = ("apps",)  # the demo's packages; the dev extra (tests, gates) never goes to a Space
# Only the dashboard needs these; a Space builds faster without them.
SPACE_EXCLUDED_REQUIREMENTS = {"streamlit"}
# System packages: Gradio calls ffmpeg for video; the non-headless OpenCV needs libGL and glib.
SYSTEM_PACKAGES = ("ffmpeg", "libgl1", "libglib2.0-0")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")

APP_TEMPLATE = '''"""Hugging Face Space entry point: the affectmodel demo showing {model_id}."""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The affectmodel and demo packages are copied next to this file.
sys.path.insert(0, str(HERE))
# A Space variable AFFECT_MODEL, if set, overrides the model chosen at publish time.
os.environ.setdefault("AFFECT_MODEL", {model_expr}){engine_line}

from demo.app import build_demo, main  # noqa: E402,F401

if __name__ == "__main__":
    raise SystemExit(main())
'''


def source_root() -> Path:
    """The checkout that holds the ``affectmodel`` package (and, next to it, ``demo``)."""
    return Path(__file__).resolve().parents[2]


def installed_gradio_version() -> str:
    try:
        return metadata.version("gradio")
    except metadata.PackageNotFoundError:
        raise PublishError("gradio is not installed; the Space's sdk_version is the installed Gradio "
                           "version (pip install 'gradio>=6,<7')") from None


def project_requirements(pyproject: Path, extras: tuple[str, ...] = SPACE_EXTRAS) -> list[str]:
    """The requirement strings that ``pyproject``'s ``[project]`` table declares: the runtime
    dependencies followed by those of ``extras``."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        requirements = list(project["dependencies"])
        optional = project.get("optional-dependencies", {})
        for extra in extras:
            requirements += optional[extra]
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PublishError(f"{pyproject}: cannot read the project's dependencies ({e})") from None
    except KeyError as e:
        raise PublishError(f"{pyproject}: no {e.args[0]!r} in the [project] table (dependencies, "
                           f"optional-dependencies {', '.join(extras)})") from None
    return [str(r).strip() for r in requirements]


def space_requirements(pyproject: Path, gradio_version: str, torch: bool = True) -> str:
    """The project's runtime requirements for a Space, from ``pyproject`` (the dependencies and the
    ``apps`` extra): no dashboard-only packages, Gradio pinned to ``gradio_version``, and torch and
    torchvision pinned to their CPU-only builds from PyTorch's CPU index, or (``torch=False``, a
    Space whose bundled model runs on ONNX Runtime) left out (see the module docstring)."""
    lines = [f"# Generated by `python -m affectmodel publish-space` from {pyproject.name}."]
    if torch:
        lines += ["# CPU-only PyTorch: the +cpu wheels come from PyTorch's CPU index, everything else from PyPI",
                  "# (PyPI's Linux torch wheel would also install the CUDA libraries, about 3.5 GB).",
                  f"--extra-index-url {TORCH_CPU_INDEX}"]
    else:
        lines += ["# No PyTorch: the bundled model runs on ONNX Runtime (model/model.onnx, checked against",
                  "# PyTorch when it was exported)."]
    for line in project_requirements(pyproject):
        name = re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-")
        if name in SPACE_EXCLUDED_REQUIREMENTS or name == "gradio":
            continue
        if name in CPU_WHEELS:
            if not torch:
                continue
            line = cpu_pin(line, pyproject.name)
        lines.append(line)
    lines.append(f"gradio=={gradio_version}")
    return "\n".join(lines) + "\n"


def cpu_pin(line: str, source: str = PYPROJECT) -> str:
    """``torch==2.14.1`` -> ``torch==2.14.1+cpu`` (an exact pin picks the CPU build; a range would
    let pip take PyPI's CUDA build of the same version)."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==\s*([0-9][0-9A-Za-z.]*)(\+[0-9A-Za-z.]+)?\s*", line)
    if not match:
        raise PublishError(f"{source}: {line!r}: pin {re.split(r'[<>=!~ ]', line)[0]} exactly (NAME==VERSION) "
                           "so that the Space installs its CPU-only build")
    return f"{match.group(1)}=={match.group(2)}+cpu"


def space_readme(repo_id: str, model_id: str | None, gradio_version: str, bundled: str | None = None) -> str:
    """The Space's README: front matter and a short description. ``model_id`` is the Hub model it
    shows, or ``None`` with ``bundled`` describing the model folder shipped in the Space."""
    from huggingface_hub import SpaceCard, SpaceCardData

    name = repo_id.split("/")[-1]
    data = SpaceCardData(
        title=name, sdk="gradio", sdk_version=gradio_version, python_version=PYTHON_VERSION,
        app_file=APP_FILE, license="mit", models=[model_id] if model_id else None,
        tags=["affective-computing", "facial-expression-recognition", "action-units", "valence-arousal"],
        emoji="🙂", colorFrom="indigo", colorTo="pink", pinned=False,
        short_description="Facial expressions, action units and valence/arousal")
    shown = (f"[{model_id}](https://huggingface.co/{model_id})" if model_id
             else f"the model bundled in this Space (`{BUNDLED_MODEL_DIR}/`, {bundled})")
    body = f"""
# {name}

Facial affect analysis with {shown}: faces are detected in a photo, webcam frame or video, and one
network predicts the basic expression, 12 facial action units and valence/arousal for each face.

Predictions describe visible facial displays, not feelings. Affect recognition is uncertain and
depends on culture and context: do not use it to make decisions about people. See the model card
for the training data, results and limitations.

Set the Space variable `AFFECT_MODEL` to show another model (a Hub id OWNER/NAME). If it cannot be
loaded, the Space still opens and says what failed.
"""
    return str(SpaceCard("---\n" + data.to_yaml() + "\n---\n" + body))


def default_model_folder() -> Path:
    """The demo's default synthetic model, built here once if missing (never on the Space)."""
    from ..training.default_model import ensure_default_model
    return ensure_default_model()


def bundle_model(source: str | Path, dest: Path, repo_id: str, int8: bool = False) -> str:
    """Copy a run folder's or a model folder's model into ``dest`` (strictly loaded first, so a
    broken checkpoint is never bundled) with its ONNX graph, exported and checked here unless the
    source has a verified one (``int8``: the int8 graph too); returns a short description of what
    was bundled."""
    from .loading import load_folder, resolve_source
    from .publish import assemble_model_folder

    if str(source) == DEFAULT_MODEL:
        source = default_model_folder()
    path = Path(source).expanduser()
    if not path.is_dir():
        raise PublishError(f"--bundle-model {source}: no such folder (a run folder, a model folder, or "
                           f"{DEFAULT_MODEL!r})")
    kind = resolve_source(path).kind
    if kind == "run":
        assemble_model_folder(path, repo_id, dest)
    else:
        load_folder(path)

        def fill(tmp: Path) -> None:
            for item in path.iterdir():
                if item.is_file() and not item.name.startswith("."):
                    shutil.copyfile(item, tmp / item.name)
        build_folder_atomically(dest, fill)
    graphs = onnx_graphs(dest, export=True, int8=int8)
    if MODEL_ONNX_FILE not in graphs or (int8 and MODEL_ONNX_INT8_FILE not in graphs):
        raise PublishError(f"{source}: the bundled model has no verified ONNX graph after its export")
    return f"{kind} {path.name}" if kind == "run" else f"model folder {path.name}"


def assemble_space_folder(repo_id: str, model_id: str | None, dest: str | Path, root: str | Path | None = None,
                          gradio_version: str | None = None, bundle: str | Path | None = None,
                          int8: bool = False) -> list[str]:
    """Write the Space folder to ``dest`` (atomically); returns its file names. Give ``model_id``
    (a Hub model) or ``bundle`` (a folder, or ``"default"``, copied into the Space and exported to
    ONNX: a Space without PyTorch; ``int8``: it runs the int8 graph)."""
    if (model_id is None) == (bundle is None):
        raise PublishError("give exactly one of --model OWNER/MODEL and --bundle-model RUN_OR_FOLDER")
    if int8 and bundle is None:
        raise PublishError("--int8 applies to --bundle-model (the bundled model is exported here)")
    root = Path(root) if root is not None else source_root()
    for package in PACKAGES:
        if not (root / package / "__init__.py").is_file():
            raise PublishError(f"{root / package} is not a package: publish-space runs from a source checkout "
                               "that has both affectmodel/ and demo/")
    if not (root / "demo" / "app.py").is_file():
        raise PublishError(f"{root / 'demo' / 'app.py'} is missing: the Space runs demo.app.main()")
    pyproject = root / PYPROJECT
    if not pyproject.is_file():
        raise PublishError(f"{pyproject} is missing: the Space's requirements.txt is derived from it")
    version = gradio_version or installed_gradio_version()
    space_reqs = space_requirements(pyproject, version, torch=bundle is None)

    def fill(tmp: Path) -> None:
        bundled = bundle_model(bundle, tmp / BUNDLED_MODEL_DIR, repo_id, int8) if bundle is not None else None
        for package in PACKAGES:
            shutil.copytree(root / package, tmp / package, ignore=_IGNORE)
        if (root / DEMO_SUITE).is_file():
            (tmp / DEMO_SUITE).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / DEMO_SUITE, tmp / DEMO_SUITE)
        model_expr = (json.dumps(model_id) if model_id
                      else f"str(HERE / {json.dumps(BUNDLED_MODEL_DIR)})")
        engine_line = f'\nos.environ.setdefault("{ENGINE_ENV}", "onnx-int8")' if int8 else ""
        (tmp / APP_FILE).write_text(APP_TEMPLATE.format(model_id=model_id or f"the bundled {bundled}",
                                                        model_expr=model_expr, engine_line=engine_line),
                                    encoding="utf-8")
        (tmp / "README.md").write_text(space_readme(repo_id, model_id, version, bundled), encoding="utf-8")
        (tmp / "requirements.txt").write_text(space_reqs, encoding="utf-8")
        (tmp / "packages.txt").write_text("\n".join(SYSTEM_PACKAGES) + "\n", encoding="utf-8")

    return folder_listing(build_folder_atomically(dest, fill))


def publish_space(repo_id: str, model_id: str | None = None, private: bool = False,
                  dry_run_dir: str | Path | None = None, token: str | None = None, api: Any = None,
                  root: str | Path | None = None, bundle: str | Path | None = None,
                  int8: bool = False) -> PublishResult:
    """Assemble the Space and upload it in one commit with ``repo_type="space"`` (or only write it,
    with ``dry_run_dir``)."""
    import tempfile

    check_repo_id(repo_id)
    if model_id is not None:
        check_repo_id(model_id, "--model")
    if dry_run_dir is not None:
        files = assemble_space_folder(repo_id, model_id, dry_run_dir, root, bundle=bundle, int8=int8)
        return PublishResult(repo_id, files, uploaded=False, folder=Path(dry_run_dir), repo_type="space")
    with tempfile.TemporaryDirectory(prefix="affectmodel-space-") as tmp:
        folder = Path(tmp) / repo_id.split("/")[-1]
        files = assemble_space_folder(repo_id, model_id, folder, root, bundle=bundle, int8=int8)
        shown = model_id or f"a bundled model ({bundle})"
        commit_url = upload_folder(folder, repo_id, repo_type="space", private=private, token=token, api=api,
                                   space_sdk="gradio", commit_message=f"Publish the affectmodel demo for {shown}")
    return PublishResult(repo_id, files, uploaded=True, repo_type="space", commit_url=commit_url)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, metavar="OWNER/NAME", help="Hub Space repository id")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="OWNER/MODEL", help="Hub model repository the Space shows")
    which.add_argument("--bundle-model", metavar="RUN_OR_FOLDER", dest="bundle_model",
                       help="copy this run folder or model folder into the Space (no Hub model needed); "
                            f"{DEFAULT_MODEL!r}: the demo's default synthetic model, built here once if missing")
    parser.add_argument("--int8", action="store_true",
                        help="with --bundle-model: also export the int8 graph and run the Space on it (faster; "
                             "checked: same top expression on >= 95%% of faces)")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    parser.add_argument("--dry-run", metavar="DIR", dest="dry_run",
                        help="only write the Space folder to DIR; upload nothing")


def run(args: argparse.Namespace) -> int:
    result = publish_space(args.repo, args.model, private=args.private, dry_run_dir=args.dry_run,
                           bundle=args.bundle_model, int8=args.int8)
    print_result(result, f"the demo for {args.model or 'the bundled model ' + str(args.bundle_model)}")
    return 0
