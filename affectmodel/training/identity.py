"""Which training options make up what a run computes (its identity), declared once.

A configuration's id (:func:`affectmodel.training.config.config_id`) hashes every option of
:class:`~affectmodel.training.config.TrainConfig` except those named here, and the study
(:mod:`affectmodel.study`) treats every option in the identity as a factor: two configurations that
differ in exactly one of them are a matched comparison of that option. An option added to
``TrainConfig`` later is therefore part of the identity, and a study factor, unless it is named here.

The study compares the temporal options (kind, window, direction and a temporal module's own
training) as one factor, ``temporal`` (:func:`fold_temporal`): a temporal run against smoothing or
the per-frame model on the same trunk differs in that factor alone.

This module imports only the torch-free model configuration (:mod:`affectmodel.model_config`), so
that the study and the dashboard read it cheaply.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..model_config import temporal_name

# Options that may differ between an interrupted run and its resumption: they change where and
# how fast the run executes, not what it computes (bit-for-bit equality with an uninterrupted run
# also needs the same device and thread count: float sums depend on how work is split).
# On GPUs even the same device and thread count do not give bit-identical results (cuDNN
# autotuning and non-deterministic kernels): there a resumed run is statistically equal only.
# ``cache`` changes where the frames come from (the same frames), not what is trained.
# Where and how fast a run goes on this machine, not what it trains: they may change on --resume,
# and a published model card leaves them out (affectmodel.hub.card), as it does the machine paths of
# the record's "dataset" entry (DATASET_LOCAL_KEYS: written by batches.load_datasets).
MACHINE_LOCAL_OPTIONS = frozenset({"resume", "workers", "threads", "device", "checkpoint_every", "out", "data",
                                   "cache"})
DATASET_LOCAL_KEYS = frozenset({"root", "frame_cache"})
RESUME_MUTABLE = MACHINE_LOCAL_OPTIONS
# Options left out of a configuration's identity (:func:`config_id`): the seed, where the run and
# its data live, how fast it runs, and the suite bookkeeping. Names of options that a version may
# not have (``cache``, ``jobs``) are harmless here.
IDENTITY_IGNORED = RESUME_MUTABLE | {"seed", "suite", "run", "cache", "jobs", "sync_bn"}
# Options of temporal runs (docs/TEMPORAL.md); meaningless for per-frame runs, so left out of their identity.
TEMPORAL_OPTIONS = ("temporal", "window", "causal")
# How long a run trains. They are part of the identity, but the study compares budgets as one figure,
# the total optimiser steps (metrics.json ``budget_steps``: the run's own steps plus those of the run
# it was initialised from), so that a run started from another run is matched on what it cost.
BUDGET_OPTIONS = frozenset({"epochs", "steps", "max_steps"})
BUDGET_FACTOR = "budget_steps"   # the study's one budget option: total optimiser steps
# The study's one temporal factor (docs/TEMPORAL.md, docs/STUDY.md): kind, window, direction and, for a
# learned module, its own training (steps, and any option it was trained with that its trunk was not).
TEMPORAL_FACTOR = "temporal"
# A temporal run on the trunk of a per-frame run of other tasks (e.g. expressions read over time from the
# multi-task trunk): that trunk's tasks, an option of the study in its own right.
TRUNK_TASKS = "trunk_tasks"
_ABSENT = "<absent>"
# Options added after runs were recorded, with the value that computes what those runs computed: a
# saved config without the key had it (resume compares against it), and a configuration holding it
# keeps the identity it had before the option existed (so it matches those older records).
LEGACY_VALUES: dict[str, Any] = {"warmup": 0.0, "va_bound": "tanh"}


def identity_values(options: Mapping[str, Any], world_size: int = 1) -> dict[str, Any]:
    """The options that make up a configuration's identity (what :func:`affectmodel.training.config.
    config_id` hashes, and what the study compares), from a configuration's options as config.json
    holds them. Per-frame runs (``temporal = "none"``) leave the temporal options out, so they keep
    the ids they had before those options existed; so does an option at its :data:`LEGACY_VALUES`.
    Under ``world_size`` processes (torchrun) each process normalises its share of the batch where
    SyncBatchNorm (``sync_bn``) or the global CCC (``ccc_global_batch``) is off: that share is part
    of the identity (``batchnorm_batch``, ``ccc_batch``); with both on, N processes compute what one
    does and share its identity."""
    values = {k: v for k, v in options.items() if k not in IDENTITY_IGNORED}
    if values.get("temporal") == "none":
        for key in TEMPORAL_OPTIONS:
            values.pop(key, None)
    for key, value in LEGACY_VALUES.items():
        if key in values and values[key] == value:
            values.pop(key)
    if world_size > 1:
        share = int(options["batch_size"]) // world_size
        if not options.get("sync_bn", False):
            values["batchnorm_batch"] = share
        if not options.get("ccc_global_batch", True):
            values["ccc_batch"] = share
    return values


def trunk_facts(config: Mapping[str, Any], metrics: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """What a temporal run records about the per-frame run whose frozen trunk it reads (its
    config.json ``trunk``), from that run's config.json and metrics.json: its name and id, its
    identity (:func:`identity_values`), the run it was itself initialised from and its total budget.
    ``name``: the run's name when its record has none (a run outside a suite: its folder's name).
    The study compares the temporal run as that trunk's configuration plus one temporal factor."""
    world_size = config.get("world_size")
    budget = metrics.get("budget_steps", metrics.get("steps"))
    return {"run": config.get("run") or name, "config_id": config.get("config_id"),
            "options": identity_values(config, world_size if isinstance(world_size, int) else 1),
            "init_run": config.get("init_run") or metrics.get("init_run"),
            "budget_steps": budget if isinstance(budget, int) and not isinstance(budget, bool) else None}


def temporal_level(options: Mapping[str, Any], own_steps: int | None = None,
                   recipe: Mapping[str, Any] | None = None) -> str:
    """A configuration's level of the temporal factor in words: ``none`` (per frame), ``smooth w5``
    (the per-frame outputs averaged over the last 5 frames: always causal, trains nothing), or
    ``gru w16 bidirectional`` / ``conv w16 causal``, followed for a learned module by its own steps
    and the options it was trained with that differ from its trunk's (``recipe``):
    ``gru w16 causal (300 steps, lr=0.003)``."""
    kind = str(options.get("temporal") or "none")
    text = temporal_name(kind, options.get("window"), options.get("causal"))
    if kind == "none":
        return text
    extras = [f"{own_steps} steps"] if kind != "smooth" and isinstance(own_steps, int) and own_steps > 0 else []
    extras += [f"{k}={_text(v)}" for k, v in sorted((recipe or {}).items())]
    return text + (f" ({', '.join(extras)})" if extras else "")


def temporal_rank(level: str) -> int:
    """0 for the per-frame level, 1 for smoothing, 2 for a learned module: the study compares each
    level with the nearest lower one present (a temporal module with smoothing, smoothing with the
    per-frame model), the baseline a temporal model must beat."""
    return 0 if level == "none" else 1 if level.startswith("smooth") else 2


def fold_temporal(options: Mapping[str, Any], own_steps: int | None,
                  trunk: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A configuration's study options with the temporal options folded into one factor.

    ``options``: the run's own study options (identity values, ``init`` and ``budget_steps`` in the
    study's form); ``own_steps``: the optimiser steps the run itself took; ``trunk``: the study
    options of the per-frame run whose frozen trunk a temporal run reads (None when unknown: a model
    folder, or a record without ``trunk``).

    A per-frame run gets ``temporal = "none"``. A temporal run is its trunk's configuration (so that it
    differs from the per-frame run it reads in the temporal factor alone) with its own tasks, and one
    option ``temporal`` that holds kind, window, direction and what the temporal module was trained
    with: its own steps and every option whose value differs from the trunk's (``lr`` for instance).
    Without a trunk, the run keeps its own options, with the budget of the run it started from.
    """
    kind = options.get("temporal")
    if kind in (None, "none"):
        out = {k: v for k, v in options.items() if k not in TEMPORAL_OPTIONS}
        out[TEMPORAL_FACTOR] = "none"
        return out
    own = {k: v for k, v in options.items() if k not in TEMPORAL_OPTIONS}
    steps = own_steps if kind != "smooth" else 0
    if trunk is None:
        out, recipe = dict(own), {}
        budget = own.get(BUDGET_FACTOR)
        if isinstance(budget, int) and isinstance(steps, int) and _is_int(budget) and _is_int(steps):
            out[BUDGET_FACTOR] = budget - steps  # the run it started from
    else:
        tasks = own.get("tasks")
        out = {k: v for k, v in trunk.items() if k not in (TEMPORAL_FACTOR, TRUNK_TASKS)}
        out["tasks"] = tasks
        if _canonical(trunk.get("tasks")) != _canonical(tasks):
            out[TRUNK_TASKS] = trunk.get("tasks")
        recipe = {k: v for k, v in own.items() if k not in ("init", BUDGET_FACTOR, "tasks")
                  and _canonical(_for_tasks(trunk.get(k, _ABSENT), tasks)) != _canonical(v)}
    out[TEMPORAL_FACTOR] = temporal_level(options, steps, recipe)
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    return str(value)


def _for_tasks(value: Any, tasks: Any) -> Any:
    """A per-task option of a trunk (``{task: value}``) restricted to a temporal run's tasks, so that a
    uni-task run on a multi-task trunk compares its own task's loss only."""
    if isinstance(value, Mapping) and isinstance(tasks, list) and set(tasks) < set(value):
        return {k: v for k, v in value.items() if k in tasks}
    return value


__all__ = ["BUDGET_FACTOR", "BUDGET_OPTIONS", "DATASET_LOCAL_KEYS", "IDENTITY_IGNORED", "LEGACY_VALUES",
           "MACHINE_LOCAL_OPTIONS", "RESUME_MUTABLE", "TEMPORAL_FACTOR", "TEMPORAL_OPTIONS", "TRUNK_TASKS",
           "fold_temporal", "identity_values", "temporal_level", "temporal_rank", "trunk_facts"]
