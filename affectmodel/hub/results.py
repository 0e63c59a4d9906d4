"""Read published runs back from Hub model repositories, as :class:`~affectmodel.records.RunRecord`
objects the dashboard shows next to local run folders."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import HISTORY_FILE, METRICS_FILE, TRAINING_CONFIG_FILE, RunRecord, RunRecordError, _read_history
from ..summaries import SUMMARY_FILE
from .loading import ModelSourceError, OfflineError, hub_download, is_repo_id


@dataclass
class HubRunRecord(RunRecord):
    """A run read from a Hub repository: ``path`` is its snapshot folder in the local Hub cache;
    ``name``/``suite`` come from the repository id instead of that cache folder's hash."""

    repo_id: str = ""
    revision: str | None = None

    @property
    def name(self) -> str:
        return self.repo_id.split("/")[-1]

    @property
    def configuration(self) -> str:
        run = self.config.get("run")
        return run if isinstance(run, str) and run else self.name

    @property
    def suite(self) -> str:
        return f"hub:{self.repo_id.split('/')[0]}"


def _read_json(path: Path, repo_id: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunRecordError(f"{repo_id}: {path.name} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RunRecordError(f"{repo_id}: {path.name} should hold a JSON object")
    return data


def read_hub_run(repo_id: str, revision: str | None = None, local_files_only: bool | None = None) -> HubRunRecord:
    """Download metrics.json, training_config.json, history.csv and the per-video summary
    (``val_summary.json``: the study's intervals over videos) of one repository, when present."""
    if not is_repo_id(repo_id):
        raise RunRecordError(f"{repo_id!r} is not a Hub repository id (OWNER/NAME)")
    metrics_path = hub_download(repo_id, METRICS_FILE, revision, local_files_only, required=False)
    if metrics_path is None:
        raise RunRecordError(f"{repo_id}: no {METRICS_FILE} in the repository (not published with "
                             "`python -m affectmodel publish`?)")
    metrics = _read_json(metrics_path, repo_id)
    config_path = hub_download(repo_id, TRAINING_CONFIG_FILE, revision, local_files_only, required=False)
    config = _read_json(config_path, repo_id) if config_path else {}
    history_path = hub_download(repo_id, HISTORY_FILE, revision, local_files_only, required=False)
    history = _read_history(history_path) if history_path else []
    # The per-video summary lands in the same snapshot folder, where the study reads it (record.path).
    # Offline, a summary that was never downloaded (or does not exist) only costs the intervals.
    try:
        hub_download(repo_id, SUMMARY_FILE, revision, local_files_only, required=False)
    except OfflineError:
        pass
    metrics["hub_repo"] = repo_id
    if revision:
        metrics["hub_revision"] = revision
    return HubRunRecord(metrics_path.parent, config, metrics, history, repo_id=repo_id, revision=revision)


def read_hub_runs(repo_ids: Iterable[str], revision: str | None = None, local_files_only: bool | None = None
                  ) -> tuple[list[HubRunRecord], list[str]]:
    """Runs of every readable repository, and one readable message per repository that failed
    (not found, offline and not cached, malformed files)."""
    records: list[HubRunRecord] = []
    errors: list[str] = []
    for repo_id in repo_ids:
        repo_id = repo_id.strip()
        if not repo_id:
            continue
        try:
            records.append(read_hub_run(repo_id, revision, local_files_only))
        except (ModelSourceError, RunRecordError) as e:
            message = str(e)
            errors.append(message if repo_id in message else f"{repo_id}: {message}")
    return records, errors
