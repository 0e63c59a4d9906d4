"""Task definitions: the single source of truth for label spaces, head sizes, losses and metrics.

Every other module (model heads, losses, metrics, data readers, demo, dashboard) reads these
definitions; nothing else declares a label list. The facts are described in
``docs/REFERENCE.md`` (label spaces, Aff-Wild2 files, metrics).

Target conventions (what a data set yields and what losses/metrics consume):

* ``expr``: one int per sample, the class index in the model's expression label space,
  ``-1`` when not annotated.
* ``au``: 12 floats per sample, each 0/1, ``-1`` where not annotated (per element).
* ``va``: 2 floats per sample (valence, arousal) in [-1, 1], ``-5`` where not annotated.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# --------------------------------------------------------------------------------------
# Expression label spaces
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSpace:
    """An ordered set of expression labels; index = label value in that data set."""

    name: str
    labels: tuple[str, ...]
    # The emotion concept each label stands for, so that mapping between spaces is by
    # meaning and never positional by accident.
    concepts: tuple[str, ...]
    description: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        return self.labels.index(label)


ABAW8 = LabelSpace(
    name="abaw8",
    labels=("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"),
    concepts=("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other"),
    description="Aff-Wild2 / ABAW 3rd edition onward (8 classes, Aff-Wild2 order)",
)
ABAW7 = LabelSpace(
    name="abaw7",
    labels=ABAW8.labels[:7],
    concepts=ABAW8.concepts[:7],
    description="Aff-Wild2 / ABAW 1st-2nd edition (7 basic expressions)",
)
AFFECTNET8 = LabelSpace(
    name="affectnet8",
    labels=("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"),
    concepts=("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"),
    description="AffectNet-8 order",
)
FER7 = LabelSpace(
    name="fer7",
    labels=("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
    concepts=("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"),
    description="FER2013 order (7 classes)",
)

LABEL_SPACES: dict[str, LabelSpace] = {s.name: s for s in (ABAW8, ABAW7, AFFECTNET8, FER7)}
DEFAULT_EXPRESSION_SPACE = ABAW8


def get_label_space(name: str | LabelSpace) -> LabelSpace:
    if isinstance(name, LabelSpace):
        return name
    try:
        return LABEL_SPACES[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown expression label space {name!r}; known: {', '.join(LABEL_SPACES)}"
        ) from None


def label_mapping(source: LabelSpace | str, target: LabelSpace | str) -> dict[int, int]:
    """Map class indices of ``source`` to ``target`` by emotion concept.

    Labels whose concept does not exist in the target (e.g. AffectNet's Contempt in ABAW-8)
    map to ``-1`` (not annotated): silently folding them into "Other" would add label noise.
    """
    source, target = get_label_space(source), get_label_space(target)
    return {
        i: (target.concepts.index(c) if c in target.concepts else -1)
        for i, c in enumerate(source.concepts)
    }


# --------------------------------------------------------------------------------------
# Action units and valence/arousal
# --------------------------------------------------------------------------------------

AU_NAMES: tuple[str, ...] = (
    "AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26",
)
AU_DESCRIPTIONS: dict[str, str] = {
    "AU1": "inner brow raiser",
    "AU2": "outer brow raiser",
    "AU4": "brow lowerer",
    "AU6": "cheek raiser",
    "AU7": "lid tightener",
    "AU10": "upper lip raiser",
    "AU12": "lip corner puller",
    "AU15": "lip corner depressor",
    "AU23": "lip tightener",
    "AU24": "lip pressor",
    "AU25": "lips part",
    "AU26": "jaw drop",
}
VA_NAMES: tuple[str, ...] = ("valence", "arousal")
VA_DESCRIPTIONS: dict[str, str] = {
    "valence": "how pleasant (+1) or unpleasant (-1) the expressed state is",
    "arousal": "how activated (+1) or calm (-1) the expressed state is",
}

# --------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------

TaskKind = Literal["multiclass", "multilabel", "regression"]


@dataclass(frozen=True)
class TaskSpec:
    key: str                     # short key used in configs, outputs and targets
    challenge_name: str          # name used by the ABAW challenge files: EXPR / AU / VA
    title: str
    kind: TaskKind
    labels: tuple[str, ...]      # class names / AU names / output names
    invalid_code: float          # "not annotated" code in Aff-Wild2 files
    losses: tuple[str, ...]      # loss names accepted by affectmodel.losses; first = default
    metric: str                  # headline metric (docs/REFERENCE.md, "Metrics")
    annotation_header: tuple[str, ...]  # line 1 of a per-video Aff-Wild2 annotation file

    @property
    def head_size(self) -> int:
        return len(self.labels)

    @property
    def default_loss(self) -> str:
        return self.losses[0]


def expression_task(space: LabelSpace | str = DEFAULT_EXPRESSION_SPACE) -> TaskSpec:
    space = get_label_space(space)
    return TaskSpec(
        key="expr",
        challenge_name="EXPR",
        title="Expression",
        kind="multiclass",
        labels=space.labels,
        invalid_code=-1,
        losses=("ce", "weighted_ce", "focal"),
        metric="P_EXPR",
        annotation_header=space.labels,
    )


AU_TASK = TaskSpec(
    key="au",
    challenge_name="AU",
    title="Action units",
    kind="multilabel",
    labels=AU_NAMES,
    invalid_code=-1,
    losses=("bce", "weighted_bce", "focal"),
    metric="P_AU",
    annotation_header=AU_NAMES,
)
VA_TASK = TaskSpec(
    key="va",
    challenge_name="VA",
    title="Valence / arousal",
    kind="regression",
    labels=VA_NAMES,
    invalid_code=-5,
    # the first is the default: CCC alone pulls an output that does not yet follow the labels neither
    # towards their mean nor their spread, so it drifts into the tanh bound (docs/TRAINING.md)
    losses=("ccc+mse", "ccc", "mse"),
    metric="P_VA",
    annotation_header=VA_NAMES,
)

# How the valence/arousal outputs are held in [-1, 1] (ModelConfig.va_bound, train.py --va-bound).
# "clamp": clamped, and in training the gradient passes the clamp unchanged, so an output driven past
# a bound is pulled back by the loss at full strength. "tanh": what models were trained with before;
# its slope vanishes at the bounds, and a head pushed there stays there (docs/TRAINING.md).
VA_BOUNDS: tuple[str, ...] = ("clamp", "tanh")
TASK_KEYS: tuple[str, ...] = ("expr", "au", "va")
CHALLENGE_TO_KEY: dict[str, str] = {"EXPR": "expr", "AU": "au", "VA": "va"}
TASK_WEIGHTINGS: tuple[str, ...] = ("fixed", "uncertainty")
# Multi-task headline score: sum of the per-task scores (0..3).
MTL_METRIC = "P_MTL"
# ABAW reference points on the Aff-Wild2 validation set (docs/REFERENCE.md, "Metrics"), for dashboards/cards.
ABAW_BASELINES: dict[str, float] = {"P_EXPR": 0.25, "P_AU": 0.39, "P_VA": 0.22, "P_MTL": 0.30}


def get_task(key: str, expression_space: LabelSpace | str = DEFAULT_EXPRESSION_SPACE) -> TaskSpec:
    """Return the spec of a task by key (``expr``/``au``/``va``) or challenge name."""
    k = CHALLENGE_TO_KEY.get(key.upper(), key.lower())
    if k == "expr":
        return expression_task(expression_space)
    if k == "au":
        return AU_TASK
    if k == "va":
        return VA_TASK
    raise ValueError(f"unknown task {key!r}; expected one of {', '.join(TASK_KEYS)} (or EXPR/AU/VA)")


def parse_tasks(tasks: str | Sequence[str]) -> tuple[str, ...]:
    """Normalise ``"expr,au"`` / ``["EXPR", "va"]`` into canonical, ordered task keys. A task
    named twice (``expr,expr``, ``AU,au``) is refused: it is a slip (a task has one head), and
    quietly reading it as one task could hide the task that was meant."""
    items = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    keys = [get_task(t.strip()).key for t in items if t.strip()]
    if not keys:
        raise ValueError("at least one task is required (expr, au, va)")
    twice = [k for k in TASK_KEYS if keys.count(k) > 1]
    if twice:
        given = tasks if isinstance(tasks, str) else ",".join(items)
        raise ValueError(f"task {' and '.join(twice)} named more than once in {given!r}; name each task once")
    return tuple(k for k in TASK_KEYS if k in keys)


def task_specs(tasks: Sequence[str], expression_space: LabelSpace | str = DEFAULT_EXPRESSION_SPACE
               ) -> dict[str, TaskSpec]:
    return {k: get_task(k, expression_space) for k in parse_tasks(tasks)}


def headline_metric(tasks: Sequence[str]) -> str:
    """The validation score used to pick the best checkpoint: P_MTL for multi-task runs."""
    keys = parse_tasks(tasks)
    return MTL_METRIC if len(keys) > 1 else get_task(keys[0]).metric
