"""Model cards for published runs: results in ``model-index`` plus what a reader needs to use the
model responsibly (data, label spaces, preprocessing, training setup, limits).

The card is built as text and parsed by ``huggingface_hub.ModelCard``; it is written into the
uploaded folder as ``README.md`` (``ModelCard.push_to_hub``/``validate`` would contact the Hub's
fixed address, see docs/REFERENCE.md, "Package pitfalls").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..model_config import ModelConfig
from ..predictions import PREDICTIONS_FILE
from ..records import SYNTHETIC_DATASET, RunRecord, run_factors
from ..study import StudyReport, comparisons_of, factors_of, provenance_note, run_estimates, selection_note
from ..summaries import SUMMARY_FILE
from ..tasks import ABAW_BASELINES, AU_DESCRIPTIONS, VA_DESCRIPTIONS, get_label_space, headline_metric, task_specs
from ..training.identity import DATASET_LOCAL_KEYS, MACHINE_LOCAL_OPTIONS
from .model_index import CARD_METRICS, dataset_type

# Each task gets its own model-index entry (the Hub groups results by task type and data set
# config): the config is the ABAW challenge track whose annotations were used.
_TASK_INDEX = {
    "expr": ("image-classification", "Facial expression recognition", "EXPR"),
    "au": ("image-classification", "Facial action unit detection (multi-label)", "AU"),
    "va": ("other", "Valence and arousal estimation (regression)", "VA"),
    "mtl": ("other", "Multi-task affect analysis", "MTL"),
}
_DATASET_NAMES = {SYNTHETIC_DATASET: "Synthetic affect benchmark (procedural faces, not real people)",
                  "aff-wild2": "Aff-Wild2"}
_DATASET_SHORT = {SYNTHETIC_DATASET: "the synthetic affect benchmark", "aff-wild2": "Aff-Wild2"}
TAGS = ["affectmodel", "facial-expression-recognition", "action-units", "valence-arousal",
        "affective-computing", "pytorch", "safetensors"]


def _dataset(metrics: dict[str, Any]) -> dict[str, Any]:
    raw = metrics.get("dataset")
    if not isinstance(raw, dict):
        raw = {}
    name = str(raw.get("name") or (SYNTHETIC_DATASET if raw.get("synthetic") else "aff-wild2"))
    return {"name": name, "synthetic": bool(raw.get("synthetic", False)),
            "split": str(raw.get("split") or "validation")}


def model_config_of(run: RunRecord) -> ModelConfig:
    """The model's own config.json (the source of label spaces); the run config if it is absent."""
    path = run.model_dir / "config.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {
        "tasks": run.tasks, "expression_space": run.config.get("expression_space", "abaw8"),
        "input_size": run.config.get("image_size", 112)}
    return ModelConfig(**{k: v for k, v in data.items() if k in ModelConfig.__dataclass_fields__})


def eval_results(run: RunRecord) -> list[EvalResult]:
    """One ``EvalResult`` per task metric present (numeric) in the run's metrics.json.

    Only the honest figures (:data:`CARD_METRICS`: P_AU with thresholds chosen on held-out training
    videos); an in-sample ``*_tuned_on_validation`` figure never enters ``model-index``.
    """
    ds = _dataset(run.metrics)
    results = []
    for key, (name, metric_type, task, _) in CARD_METRICS.items():
        value = run.metrics.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        task_type, task_name, config = _TASK_INDEX[task]
        results.append(EvalResult(
            task_type=task_type, task_name=task_name,
            dataset_type=dataset_type(ds["name"]), dataset_name=_DATASET_NAMES.get(ds["name"], ds["name"]),
            dataset_config=config, dataset_split=ds["split"],
            metric_type=metric_type, metric_name=name, metric_value=float(value)))
    return results


# ------------------------------------------------------------------ card text

def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _named(values: Any, labels: list[str]) -> dict[str, float]:
    """Per-class values as ``{label: value}`` whether metrics.json stores a dict or a list."""
    if isinstance(values, dict):
        return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float))}
    if isinstance(values, list) and len(values) == len(labels):
        return {label: float(v) for label, v in zip(labels, values, strict=True) if isinstance(v, (int, float))}
    return {}


def _interval_text(run: RunRecord, key: str, intervals: dict) -> str:
    est = intervals.get(key)
    if est is None or not (isinstance(est.low, float) and est.low == est.low):
        return "-"
    return f"{est.low:.3f} to {est.high:.3f}"


def _results_section(run: RunRecord, ds: dict[str, Any], config: ModelConfig, intervals: dict,
                     report: StudyReport | None) -> str:
    lines = [f"## Results ({ds['split']} split of {_DATASET_SHORT.get(ds['name'], ds['name'])})", "",
             "| Metric | Value | 95 % interval (validation videos) | What it is | ABAW baseline on Aff-Wild2 |",
             "|---|---|---|---|---|"]
    for key, (name, _, _, what) in CARD_METRICS.items():
        if isinstance(run.metrics.get(key), (int, float)):
            base = ABAW_BASELINES.get(key)
            lines.append(f"| {name} | {_fmt(float(run.metrics[key]))} | {_interval_text(run, key, intervals)} | "
                         f"{what} | {_fmt(base) if base is not None else '-'} |")
    lines += ["", selection_note(run)]
    if isinstance(run.metrics.get("P_AU_at_0.5"), (int, float)):
        lines.append(f"P_AU with every threshold at 0.5: {_fmt(float(run.metrics['P_AU_at_0.5']))}.")
    tuned = {k: v for k, v in run.metrics.items()
             if k.endswith("_tuned_on_validation") and isinstance(v, (int, float))}
    for key, value in tuned.items():
        lines.append(f"{key.replace('_tuned_on_validation', '')} tuned on the validation frames themselves "
                     f"(in-sample, optimistic; not reported in the metadata): {_fmt(float(value))}.")
    lines.append("ABAW challenge entries usually tune thresholds and the epoch on the validation set itself, so "
                 "their validation figures are optimistic compared with these.")
    if ds["synthetic"]:
        lines += ["", "The baselines refer to real Aff-Wild2 data and are **not comparable** with "
                      "results on the synthetic benchmark."]
    if report is not None:
        comps = comparisons_of(report, run)
        if comps:
            lines += ["", "Uni-task vs multi-task (matched configurations, means over seeds, 95 % intervals over "
                          "validation videos and seeds):", ""]
            lines += [f"- {c.title} ({c.multi} vs {c.uni or 'unmatched'}): {c.verdict_text}" for c in comps]
        factors, inter = factors_of(report, run)
        if factors:
            lines += ["", "Factor comparisons (configurations that differ in exactly one training option; variant − "
                          "reference, means over seeds, 95 % intervals over validation videos and seeds):", ""]
            lines += [f"- {f.title}, {f.label} ({f.variant} vs {f.reference}): {f.verdict_text}" for f in factors]
        if inter:
            lines += ["", "Does a factor change the multi-task effect? (difference of matched differences):", ""]
            lines += [f"- {i.title}, {i.label}: {i.verdict_text}" for i in inter]
    per_class = _named(run.metrics.get("per_class_f1"), config.labels.get("expr", []))
    per_au = _named(run.metrics.get("per_au_f1"), config.labels.get("au", []))
    for title, values in (("Per-class F1 (expression)", per_class), ("Per-AU F1", per_au)):
        if values:
            lines += ["", f"{title}:", "", "| " + " | ".join(values) + " |",
                      "|" + "---|" * len(values), "| " + " | ".join(_fmt(v) for v in values.values()) + " |"]
    facts = [(k, run.metrics[k]) for k in ("headline_metric", "best_epoch", "parameters",
                                           "train_time_s", "images_per_second") if k in run.metrics]
    if facts:
        lines += ["", "Run facts: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in facts) + "."]
    return "\n".join(lines)


def _labels_section(config: ModelConfig) -> str:
    specs = task_specs(config.tasks, config.expression_space)
    lines = ["## Outputs and label spaces", ""]
    if "expr" in specs:
        space = get_label_space(config.expression_space)
        lines += [f"- `expr`: {len(space)} logits, expression label space `{space.name}` ({space.description}); "
                  "softmax for probabilities. Index = class:",
                  "  " + ", ".join(f"{i} {label}" for i, label in enumerate(space.labels))]
    if "au" in specs:
        thresholds = config.au_thresholds or [0.5] * len(specs["au"].labels)
        lines += ["- `au`: 12 logits, one per action unit (sigmoid; active when above its threshold):",
                  "  " + ", ".join(f"{au} {AU_DESCRIPTIONS[au]} (threshold {t:.2f})"
                                   for au, t in zip(specs["au"].labels, thresholds, strict=True))]
    if "va" in specs:
        lines += [f"- `va`: 2 values in [-1, 1] ({'clamped' if config.va_bound == 'clamp' else 'tanh'}): "
                  + "; ".join(f"{name} - {VA_DESCRIPTIONS[name]}" for name in specs["va"].labels)]
    return "\n".join(lines)


def _preprocessing_section(config: ModelConfig) -> str:
    return "\n".join([
        "## Input and preprocessing", "",
        f"- One face crop per image, RGB, resized to {config.input_size}x{config.input_size} "
        "(Aff-Wild2's `cropped_aligned` faces are 112x112; `affectmodel.inference` detects and crops "
        "faces in photos and videos for you).",
        f"- Pixel values scaled to [0, 1], then normalised with mean {config.mean} and std {config.std}.",
        f"- Backbone: {config.backbone} trunk shared by one linear head per task "
        f"({', '.join(config.tasks)}); dropout {config.dropout}.",
        f"- Temporal context: {temporal_text(config)}.",
    ])


def temporal_text(config: ModelConfig) -> str:
    """How the model reads time: window and causality (docs/TEMPORAL.md)."""
    if config.temporal == "none":
        return "none (each frame is read alone)"
    looks = ("causal: each frame's output uses it and the frames before it only, so it streams (webcam)"
             if config.causal else "bidirectional: each frame's output uses frames before and after it "
                                   f"({config.window // 2} frames of delay when streaming)")
    if config.temporal == "smooth":
        return (f"per-frame outputs averaged over the last {config.window} frames of a face track "
                "(moving average; no learned parameters)")
    module = {"conv": "dilated temporal convolutions", "gru": "a GRU"}[config.temporal]
    return (f"{module} over windows of {config.window} consecutive frames of a face track, on the per-frame "
            f"trunk features; {looks}")


def _training_section(run: RunRecord, ds: dict[str, Any]) -> str:
    tasks = run.tasks
    factors = run_factors(run.config)
    # Machine-local options and paths say nothing about the model (and may be private).
    # (The machine facts are summed up in one line above it: provenance_note.)
    shown = {k: v for k, v in run.config.items() if k not in MACHINE_LOCAL_OPTIONS and k != "machine"}
    if isinstance(shown.get("dataset"), dict):
        shown["dataset"] = {k: v for k, v in shown["dataset"].items() if k not in DATASET_LOCAL_KEYS}
    setting = ("multi-task: one network trained jointly on " + ", ".join(tasks)) if len(tasks) > 1 \
        else f"uni-task: trained on {tasks[0] if tasks else '?'} only"
    return "\n".join([
        "## Training", "",
        f"- Setting: {setting}; checkpoint chosen by {run.metrics.get('headline_metric') or headline_metric(tasks)}. "
        + selection_note(run),
        f"- Data: {_DATASET_NAMES.get(ds['name'], ds['name'])}; the results above are on its {ds['split']} split.",
        f"- {provenance_note(run)}",
        "- Study factors: " + "; ".join(f"{k} {v}" for k, v in factors.items() if v) + ".",
        "- Full configuration (the uploaded `training_config.json`; local paths and machine settings omitted here):",
        "", "```json", json.dumps(shown, indent=2, default=str), "```",
    ])


def _published_files_section(run: RunRecord) -> str:
    """What the repository holds besides the model, and why the validation frames' labels are not in it."""
    lines = ["## Files", "",
             "- `model.safetensors`, `config.json`: the network (loaded strictly, never unpickled).",
             "- `metrics.json`, `training_config.json`, `history.csv`: the run record (local paths removed)."]
    if (run.path / PREDICTIONS_FILE).is_file() or (run.path / SUMMARY_FILE).is_file():
        lines += [
            f"- `{SUMMARY_FILE}`: per-video sums of the validation predictions: per video, the counts per "
            "expression class (true positives, predicted, true) and per action unit (the same at this "
            "model's thresholds, and the number of valid labels), and valence/arousal's CCC moments (n, "
            "sums of predictions, labels, their squares and products). The 95 % intervals above resample "
            "whole validation videos; they are functions of these sums, so `python -m affectmodel study` "
            "and the dashboard compute the same intervals from this repository as from the run folder.",
            "",
            "The frame-level validation predictions (`val_predictions.npz` in the run folder) are not "
            "published: they hold every frame's labels, and the annotations belong to the data set's owners "
            "(Aff-Wild2 is licensed for research, not for redistribution). The summary holds no frame, "
            "only each video's totals."]
    return "\n".join(lines)


def _usage_section(repo_id: str) -> str:
    return "\n".join([
        "## How to use", "",
        "```python",
        "from affectmodel import load_model",
        "",
        f'model = load_model("{repo_id}")  # strict, safetensors only; revision="..." for a branch',
        "outputs = model(images)  # images: (n, 3, H, W) normalised face crops, see above",
        "```", "",
        "Command line: `python -m affectmodel predict --help` (images, folders and videos, with face detection).",
    ])


_RESPONSIBLE_USE = """## Intended use
Research on facial affect analysis: comparing uni- and multi-task learning, studying expressions,
action units and valence/arousal in recorded video, and demonstrations. Predictions describe the
visible facial display of a face crop, not what a person feels.

## Limitations
- Affect recognition is uncertain: expect many errors, especially for rare expressions and rare
  action units, low resolution, strong poses, occlusion and poor lighting.
- Facial displays and their meaning depend on culture, context and the person; one face crop is
  not enough to infer an emotional state.
- Performance on people, cameras and settings unlike the training data is unknown and may be
  unequal across demographic groups; it has not been audited for fairness.

## Ethical considerations
Do not use this model to make or support decisions about people (hiring, education, policing,
health, insurance, border control, or similar), for surveillance, or to infer emotions of people
who have not agreed to it. Aff-Wild2 is licensed by its owners for research only; models trained on
it may inherit those terms."""


def _synthetic_notice() -> str:
    return ("> **Synthetic benchmark model.** This model was trained and evaluated on the procedural "
            "synthetic affect benchmark that ships with affectmodel (drawn faces, not real people). "
            "It exists for tests and demonstrations; its results say nothing about real faces and "
            "must not be compared with Aff-Wild2 results.")


def build_model_card(run: RunRecord, repo_id: str, report: StudyReport | None = None) -> ModelCard:
    """A ``ModelCard`` whose metadata carries every honest task metric of ``run`` in ``model-index``.

    Intervals over validation videos come from the run's predictions file, or the per-video summary of
    a published run (:func:`affectmodel.study.run_estimates`); with ``report``
    (:func:`affectmodel.study.study_report` of its study) the card also lists the matched uni- vs
    multi-task verdicts its configuration takes part in.
    """
    config = model_config_of(run)
    intervals = run_estimates(run)
    ds = _dataset(run.metrics)
    results = eval_results(run)
    model_name = repo_id.split("/")[-1]
    data = ModelCardData(
        library_name="affectmodel", license="mit", pipeline_tag="image-classification",
        tags=TAGS + (["synthetic-data"] if ds["synthetic"] else []),
        metrics=sorted({r.metric_type for r in results}) or None,
        model_name=model_name, eval_results=results or None)
    setting = "multi-task" if len(config.tasks) > 1 else "uni-task"
    body = [f"# {model_name}", ""]
    if ds["synthetic"]:
        body += [_synthetic_notice(), ""]
    body += [
        f"A {setting} facial affect model made with affectmodel: a {config.backbone} "
        f"trunk with heads for "
        f"{', '.join(t.title for t in task_specs(config.tasks, config.expression_space).values())}.",
        "",
        _results_section(run, ds, config, intervals, report), "", _labels_section(config), "",
        _preprocessing_section(config), "",
        _training_section(run, ds), "", _published_files_section(run), "", _usage_section(repo_id), "",
        _RESPONSIBLE_USE, "",
    ]
    return ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(body))


def write_model_card(card: ModelCard, path: str | Path) -> Path:
    """``card.save`` through an atomic write (never ``push_to_hub``: it calls a fixed address)."""
    from ..io import write_text_atomic
    return write_text_atomic(path, str(card))
