"""Multi-task saving: one multi-task model (shared trunk, three heads) against three uni-task models
(expression, AUs, valence/arousal) that give the same three outputs, for inference and for one
training step (forward, masked losses, backward, AdamW).

The shared trunk is nearly all of the cost, so the multi-task model should cost about a third of
the three uni-task models: within 1.2x of ONE uni-task model.
"""
from __future__ import annotations

import time

import torch

from .common import FamilyResult, Row, check_mode, interleaved, ratios

PARAMS = {
    "full": {"size": 112, "batch": 32, "repeats_infer": 7, "repeats_train": 4},
    "quick": {"size": 112, "batch": 16, "repeats_infer": 3, "repeats_train": 2},
    "tiny": {"size": 32, "batch": 4, "repeats_infer": 2, "repeats_train": 2},
}
UNI_TASKS = ("expr", "au", "va")
TARGET_VS_ONE = 1.2


def _targets(batch: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"expr": torch.randint(0, 8, (batch,), generator=g),
            "au": torch.randint(0, 2, (batch, 12), generator=g).float(),
            "va": torch.rand(batch, 2, generator=g) * 2 - 1}


def run(mode: str = "full") -> FamilyResult:
    from affectmodel import AffectModel, ModelConfig
    from affectmodel.losses import MultiTaskLoss
    from affectmodel.training.step import TrainModule, train_step

    p = PARAMS[check_mode(mode)]
    started = time.perf_counter()
    size, batch = p["size"], p["batch"]
    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    targets = _targets(batch)
    variants = {"multi": ("expr", "au", "va"), **{t: (t,) for t in UNI_TASKS}}
    models = {name: AffectModel(ModelConfig(tasks=list(tasks), input_size=size)).eval()
              for name, tasks in variants.items()}

    def infer(model):
        def call() -> None:
            with torch.inference_mode():
                model(images)
        return call

    infer_times = interleaved({name: infer(m) for name, m in models.items()}, p["repeats_infer"])

    modules = {name: TrainModule(models[name].train(), MultiTaskLoss(list(tasks)))
               for name, tasks in variants.items()}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in modules.items()}

    def step(name):
        return lambda: train_step(modules[name], images, targets, optimizers[name])

    train_times = interleaved({name: step(name) for name in variants}, p["repeats_train"])

    rows = []
    for what, times in (("inference", infer_times), ("training step", train_times)):
        three = [sum(times[t][i] for t in UNI_TASKS) for i in range(len(times["multi"]))]
        one = [v / len(UNI_TASKS) for v in three]  # the average uni-task model of that round
        ms = lambda values: [v * 1e3 for v in values]  # noqa: E731
        rows += [
            Row(f"{what}: multi-task model, batch {batch}", ms(times["multi"]), "ms"),
            Row(f"{what}: one uni-task model (mean of 3)", ms(one), "ms"),
            Row(f"{what}: three uni-task models", ms(three), "ms"),
            Row(f"{what}: multi-task / three uni-task", ratios(times["multi"], three), "x",
                ("<=", TARGET_VS_ONE / len(UNI_TASKS)), note="about a third"),
            Row(f"{what}: multi-task / one uni-task", ratios(times["multi"], one), "x", ("<=", TARGET_VS_ONE)),
        ]
    return FamilyResult("multitask_saving", "Multi-task saving: one model vs three uni-task models", rows,
                        params={**p, "torch_threads": torch.get_num_threads()},
                        seconds=time.perf_counter() - started)
