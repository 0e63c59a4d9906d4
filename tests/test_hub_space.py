"""Tests for affectmodel.hub.space (the ``publish-space`` command).

The Space folder is assembled from a source root made by the test (the real ``affectmodel``
package and requirements, with a stub ``demo`` package whose ``app.py`` has the demo's contract:
``build_demo(model_source=None)`` and ``main()``), then checked: file list, README front matter
(parsed with ``huggingface_hub.SpaceCard``), requirements, and the Space's ``app.py`` imported and
run in a subprocess that sees only the Space folder. The Space built from the real checkout is
imported the same way, and a Space with a bundled model is started with an unreachable model id.
Uploads go to ``HfApi`` methods replaced by recorders; nothing reaches the network.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import types
from importlib import metadata
from pathlib import Path

import pytest
from huggingface_hub import HfApi, SpaceCard

from affectmodel import cli
from affectmodel.hub.publish import PublishError
from affectmodel.hub.space import publish_space, source_root

REPO_ROOT = Path(__file__).resolve().parents[1]
STUB_APP = '''import os


def build_demo(model_source=None):
    return {"model": model_source or os.environ.get("AFFECT_MODEL")}


def main():
    print("demo for", build_demo()["model"])
'''


@pytest.fixture
def root(tmp_path):
    """A source root: the real affectmodel package and requirements, a stub demo package."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT / "affectmodel", root / "affectmodel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "demo").mkdir()
    (root / "demo" / "__init__.py").write_text("")
    (root / "demo" / "app.py").write_text(STUB_APP)
    (root / "demo" / "__pycache__").mkdir()
    (root / "demo" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    return root


# torch and torchvision made unimportable in a child process, as in a Space installed without them.
NO_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"No module named {name!r} (not installed in this Space)", name=name)
sys.meta_path.insert(0, _NoTorch())
"""


def _run_in_space(folder: Path, code: str) -> subprocess.CompletedProcess:
    """Run Python in the Space folder with nothing of this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AFFECT_MODEL")}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONNOUSERSITE="1")
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, check=False,
                          text=True, timeout=120)


def test_space_folder_contents(root, tmp_path):
    result = publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "space", root=root)
    folder = tmp_path / "space"
    files = set(result.files)
    assert {"README.md", "app.py", "requirements.txt", "packages.txt", "demo/__init__.py", "demo/app.py",
            "affectmodel/__init__.py", "affectmodel/model.py", "affectmodel/tasks.py",
            "affectmodel/hub/loading.py"} <= files
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    assert result.uploaded is False

    card = SpaceCard.load(folder / "README.md")
    assert card.data.sdk == "gradio" and card.data.sdk_version == metadata.version("gradio")
    assert card.data.python_version == "3.11" and card.data.app_file == "app.py"
    assert card.data.models == ["me/affect-mtl"] and card.data.license == "mit"
    assert 'python_version: "3.11"' in (folder / "README.md").read_text() or \
        "python_version: '3.11'" in (folder / "README.md").read_text()  # a string, not the float 3.11

    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert f"gradio=={metadata.version('gradio')}" in requirements
    # CPU-only PyTorch: PyTorch's CPU index next to PyPI, torch and torchvision pinned to +cpu builds
    options = [line for line in requirements if line.startswith("-")]
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    assert not any(line.startswith("streamlit") for line in requirements)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = [line for line in project["dependencies"] if line.startswith(("torch==", "torchvision=="))]
    assert len(pins) == 2
    for pin in pins:
        assert pin + "+cpu" in requirements and pin not in requirements
    # Every other runtime dependency and the demo's extra, as declared (the one dependency list)
    for line in project["dependencies"] + project["optional-dependencies"]["apps"]:
        if not line.startswith(("torch==", "torchvision==", "gradio>", "streamlit")):
            assert line in requirements
    assert not any(line.startswith(("pytest", "ruff", "mypy")) for line in requirements)
    assert "ffmpeg" in (folder / "packages.txt").read_text().split()


def test_space_app_imports_and_runs_from_the_folder_alone(root, tmp_path):
    """app.py puts the Space folder on sys.path and points the demo at the published model."""
    publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "space", root=root)
    folder = tmp_path / "space"
    probe = ("import json, os, app, affectmodel, demo.app; print(json.dumps({'model': os.environ['AFFECT_MODEL'], "
             "'build_demo': callable(app.build_demo), 'affectmodel': affectmodel.__file__}))")
    done = _run_in_space(folder, probe)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["model"] == "me/affect-mtl" and seen["build_demo"] is True
    assert Path(seen["affectmodel"]).resolve().is_relative_to(folder.resolve())
    ran = _run_in_space(folder, "import runpy; runpy.run_path('app.py', run_name='__main__')")
    assert ran.returncode == 0, ran.stderr
    assert "demo for me/affect-mtl" in ran.stdout


@pytest.mark.slow  # a cold import of gradio and torch in a subprocess
def test_space_from_the_real_checkout_imports_the_real_demo(tmp_path):
    """The Space built from this checkout imports demo.app and finds build_demo (no model load)."""
    assert source_root() == REPO_ROOT
    publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "space")
    done = _run_in_space(tmp_path / "space", "import app; assert callable(app.build_demo); print('ok')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_space_upload_is_one_space_commit(root, monkeypatch):
    """HfApi methods replaced by recorders: create_repo(space, gradio SDK) then one upload_folder."""
    calls = []

    def create_repo(api, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(api, **kwargs):
        files = sorted(str(p.relative_to(kwargs["folder_path"])) for p in Path(kwargs["folder_path"]).rglob("*")
                       if p.is_file())
        calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))
        return types.SimpleNamespace(commit_url="https://hub.example/spaces/me/affect-demo/commit/1")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    result = publish_space("me/affect-demo", "me/affect-mtl", root=root)
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][1] == "me/affect-demo"
    assert calls[0][2]["repo_type"] == "space" and calls[0][2]["space_sdk"] == "gradio"
    assert calls[0][2]["exist_ok"] is True
    assert calls[1][2]["repo_type"] == "space" and "app.py" in calls[1][2]["files"]
    assert calls[1][2]["files"] == result.files and result.uploaded


def test_space_input_errors(root, tmp_path):
    with pytest.raises(PublishError, match="--model 'affect' is not a Hub repository id"):
        publish_space("me/affect-demo", "affect", dry_run_dir=tmp_path / "s", root=root)
    (root / "demo" / "app.py").unlink()
    with pytest.raises(PublishError, match="demo/app.py is missing"):
        publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "s", root=root)
    assert not (tmp_path / "s").exists()


def test_cli_dry_run(tmp_path, capsys):
    assert cli.main(["publish-space", "--repo", "me/affect-demo", "--model", "me/affect-mtl",
                     "--dry-run", str(tmp_path / "space")]) == 0
    assert "nothing was uploaded" in capsys.readouterr().out
    assert (tmp_path / "space" / "app.py").is_file()


def test_space_requirements_parse_as_pip_requirements_with_cpu_torch(root, tmp_path):
    """What pip reads from the generated file (the CPU index itself cannot be reached from here)."""
    from packaging.requirements import Requirement

    publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "space", root=root)
    lines = [line.strip() for line in (tmp_path / "space" / "requirements.txt").read_text().splitlines()]
    reqs = {}
    for line in lines:
        if line and not line.startswith(("#", "-")):
            req = Requirement(line)
            reqs[req.name] = req
    assert str(reqs["torch"].specifier).endswith("+cpu") and str(reqs["torchvision"].specifier).endswith("+cpu")
    assert reqs["torch"].specifier.contains(str(reqs["torch"].specifier)[2:])
    assert "gradio" in reqs and "streamlit" not in reqs and "e" not in reqs


def test_space_requirements_refuse_a_torch_range(root, tmp_path):
    text = (root / "pyproject.toml").read_text().replace('"torch==', '"torch>=', 1)
    (root / "pyproject.toml").write_text(text)
    with pytest.raises(PublishError, match="pin torch exactly"):
        publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "s", root=root)


def test_space_requirements_need_the_apps_extra(root, tmp_path):
    text = (root / "pyproject.toml").read_text().replace("\napps = [", "\ndemo_apps = [", 1)
    (root / "pyproject.toml").write_text(text)
    with pytest.raises(PublishError, match="pyproject.toml: no 'apps'"):
        publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "s", root=root)


def _small_run(tmp_path: Path, exported: Path) -> Path:
    """A run folder whose model is the session's exported model (its ONNX graphs verified, so
    bundling it does not export again)."""
    run = tmp_path / "run"
    shutil.copytree(exported, run / "model")
    (run / "config.json").write_text(json.dumps({"tasks": ["expr", "au", "va"], "image_size": 32}))
    (run / "metrics.json").write_text(json.dumps({"tasks": ["expr", "au", "va"], "P_MTL": 1.0,
                                                  "dataset": {"name": "synthetic-affect", "synthetic": True}}))
    return run


def test_bundled_model_space_needs_no_hub_model_and_no_torch(root, tmp_path, exported_model):
    from affectmodel.hub.loading import load_model

    run = _small_run(tmp_path, exported_model)
    try:
        result = publish_space("me/affect-demo", dry_run_dir=tmp_path / "space", root=root, bundle=run)
    except (PublishError, FileNotFoundError, ValueError) as e:  # a run record the publisher wants
        pytest.fail(f"bundling a run failed: {e}")
    folder = tmp_path / "space"
    assert {"model/model.safetensors", "model/config.json", "model/model.onnx", "model/onnx.json"} <= set(result.files)
    assert "model/model.int8.onnx" in result.files  # the run's verified graphs travel with it, but the Space
    load_model(folder / "model")
    requirements = (folder / "requirements.txt").read_text()
    lines = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    assert not any(line.startswith(("torch", "torchvision", "--extra-index-url")) for line in lines)
    assert "onnxruntime>=1.18,<2" in lines and f"gradio=={metadata.version('gradio')}" in lines
    assert "AFFECT_ENGINE" not in (folder / "app.py").read_text()  # runs fp32 unless published with --int8
    card = SpaceCard.load(folder / "README.md")
    assert not card.data.models and "bundled in this Space" in (folder / "README.md").read_text()
    probe = "import os, app; print(os.environ['AFFECT_MODEL'])"
    done = _run_in_space(folder, probe)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip().splitlines()[-1]) == (folder / "model").resolve()


def test_bundle_and_model_are_exclusive(root, tmp_path):
    with pytest.raises(PublishError, match="exactly one of --model"):
        publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "s", root=root, bundle=tmp_path)
    with pytest.raises(PublishError, match="no such folder"):
        publish_space("me/affect-demo", dry_run_dir=tmp_path / "s", root=root, bundle=tmp_path / "nowhere")


@pytest.mark.slow  # a cold import of gradio and torch in a subprocess
def test_real_space_opens_with_an_unreachable_model(tmp_path):
    """The Space built from this checkout, started with AFFECT_MODEL naming a repository that
    cannot be reached: the server comes up and the page says what failed."""
    import socket
    import time
    import urllib.request

    publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "space")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONNOUSERSITE="1",
               AFFECT_MODEL="nobody/unreachable-model", GRADIO_SERVER_PORT=str(port),
               HF_HUB_CACHE=str(tmp_path / "hub-cache"))
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=tmp_path / "space", env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        page = None
        for _ in range(240):
            if proc.poll() is not None:
                break
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert page is not None, proc.stdout.read() if proc.poll() is not None else "server did not start"
        assert "No model loaded" in page and "AFFECT_MODEL" in page and "nobody/unreachable-model" in page
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert out.count("NO MODEL") == 1, out


def test_bundle_default_uses_the_demo_default_model(root, tmp_path, monkeypatch, exported_model):
    """``--bundle-model default`` bundles the demo's default model (built once locally, reused)."""
    from affectmodel.hub import space

    run = _small_run(tmp_path, exported_model)
    monkeypatch.setattr(space, "default_model_folder", lambda: run)
    result = publish_space("me/affect-demo", dry_run_dir=tmp_path / "space", root=root, bundle="default")
    assert "model/model.safetensors" in result.files
    assert "run run" in (tmp_path / "space" / "README.md").read_text()


def test_bundling_exports_a_model_without_a_graph_and_int8_on_request(root, tmp_path, exported_model, monkeypatch):
    """A model folder without ONNX is exported into the Space (the slow tracing step replaced by the
    session's already exported graph of the same weights; the check against PyTorch runs for real)."""
    from affectmodel.inference import export

    folder = tmp_path / "plain"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(exported_model / name, folder / name)
    monkeypatch.setattr(export, "export_fp32", lambda model, path: shutil.copyfile(exported_model / "model.onnx", path))
    monkeypatch.setattr(export, "quantize_int8",
                        lambda fp32, out, *args: shutil.copyfile(exported_model / "model.int8.onnx", out))
    monkeypatch.setattr(export, "INT8_MIN_AGREEMENT", 0.8)  # a random network (see the exported_model fixture)
    result = publish_space("me/affect-demo", dry_run_dir=tmp_path / "space", root=root, bundle=folder, int8=True)
    assert {"model/model.onnx", "model/model.int8.onnx", "model/onnx.json"} <= set(result.files)
    assert not (folder / "model.onnx").exists()  # the source folder is left as it was
    assert 'os.environ.setdefault("AFFECT_ENGINE", "onnx-int8")' in (tmp_path / "space" / "app.py").read_text()
    with pytest.raises(PublishError, match="--int8 applies to --bundle-model"):
        publish_space("me/affect-demo", "me/affect-mtl", dry_run_dir=tmp_path / "s2", root=root, int8=True)


@pytest.mark.slow  # imports gradio in a subprocess
def test_bundled_space_runs_the_demo_without_torch(tmp_path, exported_model):
    """The Space built from this checkout with a bundled model, in a process where torch and
    torchvision cannot be imported: the demo loads the model on ONNX Runtime and answers an image."""
    run = _small_run(tmp_path, exported_model)
    publish_space("me/affect-demo", dry_run_dir=tmp_path / "space", bundle=run)
    shutil.copyfile(REPO_ROOT / "demo" / "examples" / "astronaut.jpg", tmp_path / "face.jpg")
    code = NO_TORCH + f"""
import json, sys, app
from demo.app import load_demo_model, make_image_handlers
model = load_demo_model(None)
predict_image, _ = make_image_handlers(model)
result = predict_image({str(tmp_path / "face.jpg")!r})[-1]
assert "torch" not in sys.modules and "torchvision" not in sys.modules
print(json.dumps({{"engine": model.predictor.engine_name, "faces": len(result["faces"])}}))
"""
    done = _run_in_space(tmp_path / "space", code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"engine": "onnx", "faces": 1}
