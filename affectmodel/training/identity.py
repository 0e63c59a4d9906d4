"""Which training options make up what a run computes (its identity), declared once.

A configuration's id (:func:`affectmodel.training.config.config_id`) hashes every option of
:class:`~affectmodel.training.config.TrainConfig` except those named here, and the study
(:mod:`affectmodel.study`) treats every option in the identity as a factor: two configurations that
differ in exactly one of them are a matched comparison of that option. An option added to
``TrainConfig`` later is therefore part of the identity, and a study factor, unless it is named here.

This module imports nothing from the project (nor torch), so that the study and the dashboard read
it cheaply.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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



def identity_values(options: Mapping[str, Any], world_size: int = 1) -> dict[str, Any]:
    """The options that make up a configuration's identity (what :func:`affectmodel.training.config.
    config_id` hashes, and what the study compares), from a configuration's options as config.json
    holds them. Per-frame runs (``temporal = "none"``) leave the temporal options out, so they keep
    the ids they had before those options existed. Under ``world_size`` processes (torchrun) each
    process normalises its share of the batch where SyncBatchNorm (``sync_bn``) or the global CCC
    (``ccc_global_batch``) is off: that share is part of the identity (``batchnorm_batch``,
    ``ccc_batch``); with both on, N processes compute what one does and share its identity."""
    values = {k: v for k, v in options.items() if k not in IDENTITY_IGNORED}
    if values.get("temporal") == "none":
        for key in TEMPORAL_OPTIONS:
            values.pop(key, None)
    if world_size > 1:
        share = int(options["batch_size"]) // world_size
        if not options.get("sync_bn", False):
            values["batchnorm_batch"] = share
        if not options.get("ccc_global_batch", True):
            values["ccc_batch"] = share
    return values


__all__ = ["BUDGET_OPTIONS", "DATASET_LOCAL_KEYS", "IDENTITY_IGNORED", "MACHINE_LOCAL_OPTIONS", "RESUME_MUTABLE",
           "TEMPORAL_OPTIONS", "identity_values"]
