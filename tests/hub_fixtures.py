"""Helpers for the Hub tests (tests/test_hub_*.py): a tiny run folder, and a fake Hub.

* :func:`make_run` writes a complete run folder (``model/``, ``config.json``, ``metrics.json``,
  ``history.csv``, optionally ``val_predictions.npz``) with the library's own writers and a small
  untrained model.
* :class:`FakeHub` is a bounded local HTTP server on 127.0.0.1 that answers the two requests
  ``hf_hub_download`` makes (HEAD and GET ``/<owner>/<name>/resolve/<revision>/<file>``) with the
  Hub's headers and error codes, so downloads, the cache and the not-found paths run for real
  without network. :func:`use_endpoint` points huggingface_hub at it and at a temporary cache.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from affectmodel.model import AffectModel, ModelConfig
from affectmodel.predictions import PREDICTIONS_FILE, Predictions, save_predictions
from affectmodel.training.records_writer import write_config, write_history, write_metrics, write_model

SENTINEL_TOKEN = "hf_SENTINELtokenDoNotLeak0123456789"


def make_run(root: Path, name: str = "mtl", tasks=("expr", "au", "va"), synthetic: bool = True,
             input_size: int = 32, model: AffectModel | None = None, predictions: bool = False,
             extra_metrics: dict | None = None) -> Path:
    """A complete run folder written with the library's writers and an untrained model (or ``model``).

    ``predictions=True`` also writes ``val_predictions.npz`` (random outputs on a few videos)."""
    run = Path(root) / "suite" / name
    if model is not None:
        tasks, input_size = model.tasks, model.config.input_size
    write_model(run, model or AffectModel(ModelConfig(tasks=list(tasks), input_size=input_size)))
    config = {"data": "/home/someone/private/data", "out": str(run), "tasks": list(tasks), "init": "random",
              "expression_space": "abaw8", "losses": {t: {"expr": "ce", "au": "bce", "va": "ccc"}[t] for t in tasks},
              "weighting": "fixed", "augment": "light", "image_size": input_size, "epochs": 2, "lr": 0.001,
              "batch_size": 8, "seed": 0, "code_version": "test", "suite": "suite", "run": name}
    write_config(run, config)
    values = {"expr": {"P_EXPR": 0.3125}, "au": {"P_AU": 0.4375},
              "va": {"P_VA": 0.21875, "ccc_valence": 0.25, "ccc_arousal": 0.1875}}
    metrics = {"tasks": list(tasks), "multi_task": len(tasks) > 1,
               "dataset": {"name": "synthetic-affect" if synthetic else "aff-wild2", "synthetic": synthetic,
                           "split": "validation"},
               "headline_metric": "P_MTL" if len(tasks) > 1 else next(iter(values[tasks[0]])),
               "best_epoch": 2, "parameters": 11_200_000}
    for t in tasks:
        metrics.update(values[t])
    if len(tasks) > 1:
        metrics["P_MTL"] = sum(metrics[k] for k in ("P_EXPR", "P_AU", "P_VA") if k in metrics)
    if predictions:
        rng = np.random.default_rng(0)
        n = 60
        outputs = {"expr": rng.random((n, 8)), "au": rng.random((n, 12)), "va": rng.uniform(-1, 1, (n, 2))}
        targets = {"expr": rng.integers(0, 8, n), "au": (rng.random((n, 12)) < 0.3).astype(float),
                   "va": rng.uniform(-1, 1, (n, 2))}
        save_predictions(run / PREDICTIONS_FILE, Predictions(
            np.repeat([f"v{i}" for i in range(6)], 10), np.tile(np.arange(1, 11), 6),
            {t: outputs[t] for t in tasks}, {t: targets[t] for t in tasks}))
    metrics.update(extra_metrics or {})
    write_history(run, [{"epoch": 1, "lr": 0.001, "train_loss": 1.5, "val_P_MTL": 0.5, "time_s": 3.0},
                        {"epoch": 2, "lr": 0.0005, "train_loss": 1.2, "val_P_MTL": 0.9, "time_s": 3.1}],
                  ["epoch", "lr", "train_loss", "val_P_MTL", "time_s"])
    write_metrics(run, metrics)
    return run


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeHub:
    """``repos = {"owner/name": {"main": {"config.json": b"...", ...}}}`` served on 127.0.0.1."""

    def __init__(self, repos: dict[str, dict[str, dict[str, bytes]]]):
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        self.post_status = 401
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _answer(self, with_body: bool) -> None:
                hub.requests.append((self.command, self.path))
                parts = unquote(self.path.split("?")[0]).strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._error(404, "RepoNotFound")
                repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                if repo not in hub.repos:
                    return self._error(404, "RepoNotFound")
                files = hub.repos[repo].get(revision)
                if files is None:
                    return self._error(404, "RevisionNotFound")
                if filename not in files:
                    return self._error(404, "EntryNotFound")
                body = files[filename]
                self.send_response(200)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                commit = hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()
                self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def _error(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                # Repository creation and commits: refuse, echoing the Authorization header the
                # way a careless server might, so tests can check that no token leaks through.
                hub.requests.append((self.command, self.path))
                body = json.dumps({"error": f"refused credentials {self.headers.get('Authorization')}"}).encode()
                self.send_response(hub.post_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self):
                self._answer(False)

            def do_GET(self):
                self._answer(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 5
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


def use_endpoint(monkeypatch, endpoint: str, cache: Path, offline: bool = False) -> None:
    """Point huggingface_hub at ``endpoint`` with an empty cache; these constants are read at
    import time, so the module attributes are patched rather than the environment."""
    from huggingface_hub import constants

    endpoint = endpoint.rstrip("/")
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    # huggingface_hub 2.x fetches an "agent harness" registry once and caches it under HF_HOME.
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(Path(cache) / ".agent_harnesses.json"))
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def no_retry_wait(monkeypatch) -> None:
    """huggingface_hub backs off 1+2+4+8+8 s before reporting a refused connection; skip the waits."""
    import types

    from huggingface_hub.utils import _http

    monkeypatch.setattr(_http, "time", types.SimpleNamespace(sleep=lambda seconds: None))
