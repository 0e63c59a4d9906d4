"""Uncertainty of study figures: intervals over validation videos and over training seeds (numpy only).

Why this shape (docs/REFERENCE.md, "Study protocol"):

* Frames of one video are strongly correlated, so resampling frames gives intervals far too narrow.
  Every resample here draws whole validation **videos** with replacement (a cluster bootstrap). For a
  difference between two configurations the *same* resampled videos score both sides (paired), on the
  frames both sides predicted and that carry a valid label for the task.
* Each metric is a function of per-video sufficient statistics (true positives, predicted and true
  counts per class/AU for F1; sums and cross-products for CCC), so one resample is a weighted sum of
  per-video rows: ``B x V`` weights times ``V x K`` statistics. A 27k-frame, 70-video set with 1000
  resamples, 3 seeds and 2 sides takes well under a second.
* Seeds: a configuration is trained with several seeds; its figure is the mean over seeds. Two
  sources of uncertainty are combined: (a) which videos happen to be in the validation set, measured
  by the video bootstrap of the seed-mean (or of the difference of seed-means), and (b) run-to-run
  spread, measured by the sample variance over seeds, ``s^2 / n`` per side. The interval is
  ``mean +- t * sqrt(var_videos + s_a^2/n_a + s_b^2/n_b)`` with Welch-Satterthwaite degrees of freedom
  (the bootstrap term counts as having infinitely many).

  A fully hierarchical bootstrap (resample seeds per side too) was the alternative: with 3 seeds,
  resampling 3 values with replacement underestimates their variance by a factor 2/3 and ignores that
  the variance itself is estimated from 3 values, so with no effect a nominal 95 % interval would
  exclude zero in about 18 % of studies (P(|t_4| > 1.96 sqrt(2/3)) when seed spread dominates). The
  t-combination keeps the false "helped/hurt" rate near the nominal 5 % (tests/test_statistics.py
  simulates it), at the price of wide intervals with few seeds, which is the honest answer. The
  model-by-video interaction appears in both terms, which errs on the wide side.
* With one seed on a side the run-to-run spread cannot be estimated: :attr:`Interval.seeds_known` is
  False and the interval covers the validation videos only; callers must not draw a verdict from it.
* An estimate carries the metric's no-skill level on the same frames (:attr:`Interval.no_skill`, from
  :func:`affectmodel.metrics.no_skill_levels`): an interval that reaches it is not evidence that the
  configuration learned anything.

Everything is deterministic given ``seed`` (a ``numpy.random.Generator`` is created from it).
"""
from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import (
    NO_SKILL_VA,
    no_skill_au_from_counts,
    no_skill_expression_from_counts,
    no_skill_levels,
    valid_au,
    valid_expression,
    valid_rows,
    valid_va,
)
from .predictions import Predictions
from .summaries import TaskSummary, ValidationSummary, task_set_key
from .tasks import AU_NAMES, MTL_METRIC, get_label_space, get_task

METRIC_TASKS: dict[str, tuple[str, ...]] = {"P_EXPR": ("expr",), "P_AU": ("au",), "P_VA": ("va",),
                                            MTL_METRIC: ("expr", "au", "va")}
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class ScoredRun:
    """One run's validation predictions and the AU thresholds it was selected with (None = 0.5).

    A published run has no predictions file but its per-video summary
    (:class:`~affectmodel.summaries.ValidationSummary`, AU counts already at its thresholds): it
    scores and resamples the same, paired with runs scored on the same frames and labels."""

    predictions: Predictions | ValidationSummary
    au_thresholds: Sequence[float] | np.ndarray | None = None
    name: str = ""


@dataclass(frozen=True)
class Interval:
    """A figure (a mean over seeds, or a difference of such means) with its interval.

    ``video_se`` is the standard error from the video bootstrap, ``seed_se`` the one from the spread
    over seeds (``sqrt(sum s^2/n)`` over sides; 0 when a side has one seed); ``per_seed`` holds each
    side's single-run figures on the frames used. ``no_skill`` is the metric's no-skill level on those
    frames (an estimate of one configuration; NaN for a difference or when the labels are unknown).
    """

    mean: float
    low: float
    high: float
    level: float
    n_seeds: tuple[int, ...]          # per side (one entry for a single configuration)
    n_videos: int
    n_frames: int
    video_se: float                   # standard error from the video bootstrap
    seed_se: float                    # standard error from the spread over seeds (0 when unknown)
    df: float
    per_seed: tuple[tuple[float, ...], ...]   # each side's per-seed figures, on the frames used
    no_skill: float = math.nan

    @property
    def seeds_known(self) -> bool:
        """Whether every side has at least two seeds, i.e. run-to-run spread is part of the interval."""
        return min(self.n_seeds) >= 2

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def above_no_skill(self) -> bool | None:
        """Whether the whole interval lies above the no-skill level (None when either is unknown)."""
        if not (math.isfinite(self.no_skill) and math.isfinite(self.low)):
            return None
        return self.low > self.no_skill

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "level": self.level,
                "n_seeds": list(self.n_seeds), "seeds_known": self.seeds_known, "n_videos": self.n_videos,
                "n_frames": self.n_frames, "video_se": self.video_se, "seed_se": self.seed_se,
                "df": None if math.isinf(self.df) else self.df, "per_seed": [list(s) for s in self.per_seed],
                "no_skill": self.no_skill}


# ----------------------------------------------------------------------------- Student t quantile

def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t with ``df`` (> 0, may be fractional or inf) degrees of freedom.

    numpy only: the density is integrated (Simpson) and the quantile found by bisection, accurate to
    about 1e-6 for df >= 1; df above 1e4 uses the normal distribution.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if df > 1e4:
        return _normal_quantile(p)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        n = 4000
        xs = np.linspace(0.0, x, n + 1)
        pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(xs * xs / df))
        simpson = (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum()) * (x / n) / 3
        return 0.5 + simpson

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            return math.inf
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def _normal_quantile(p: float) -> float:
    # Acklam's rational approximation refined by one Newton step (error < 1e-12).
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
         4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
    q = min(p, 1 - p)
    if q < 0.02425:
        r = math.sqrt(-2 * math.log(q))
        x = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / \
            ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1)
    else:
        r = q - 0.5
        s = r * r
        x = (((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * r / \
            (((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1)
    x = -x if p > 0.5 else x  # x is the (negative) quantile of q = min(p, 1 - p)
    e = 0.5 * math.erfc(-x / math.sqrt(2)) - p
    return x - e * math.sqrt(2 * math.pi) * math.exp(x * x / 2)


# ----------------------------------------------------------------------------- per-video statistics

def _task_rows(predictions: Predictions, task: str) -> np.ndarray:
    """Rows with at least one valid label for ``task``."""
    return valid_rows(task, predictions.targets[task], len(get_label_space(predictions.expression_space)))


def _per_video(codes: np.ndarray, values: np.ndarray, n_videos: int) -> np.ndarray:
    """(V, K) column sums of ``values`` (N, K) per video code."""
    values = np.asarray(values, dtype=np.float64)
    k = values.shape[1]
    flat = (codes[:, None] * k + np.arange(k)).ravel()
    return np.bincount(flat, weights=values.ravel(), minlength=n_videos * k).reshape(n_videos, k)


def video_statistics(predictions: Predictions, task: str, video_codes: np.ndarray, n_videos: int,
                     au_thresholds: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Per-video sufficient statistics of ``task`` on the rows of ``predictions`` (all rows are used).

    Shapes: ``expr`` (V, C, 3) and ``au`` (V, 12, 3) hold (true positives, predicted positives, true
    positives + false negatives) per class/AU; ``va`` (V, 2, 6) holds (n, sum x, sum y, sum x^2,
    sum y^2, sum xy) per dimension, x = prediction, y = target. Invalid labels add nothing.
    """
    out, tgt = predictions.outputs[task], predictions.targets[task]
    v = np.asarray(video_codes, dtype=np.int64)
    if task == "expr":
        k = len(get_label_space(predictions.expression_space))
        keep = valid_expression(tgt, k)
        pred, true, vv = out.argmax(axis=1)[keep], tgt[keep].astype(np.int64), v[keep]
        hit = pred == true
        tp = np.bincount(vv[hit] * k + true[hit], minlength=n_videos * k)
        pc = np.bincount(vv * k + pred, minlength=n_videos * k)
        tc = np.bincount(vv * k + true, minlength=n_videos * k)
        return np.stack([tp, pc, tc], axis=-1).reshape(n_videos, k, 3).astype(np.float64)
    if task == "au":
        thr = np.broadcast_to(np.asarray(0.5 if au_thresholds is None else au_thresholds, dtype=np.float64),
                              (len(AU_NAMES),))
        valid = valid_au(tgt)
        decided = (out >= thr) & valid
        true = (tgt == 1) & valid
        return np.stack([_per_video(v, arr, n_videos) for arr in (decided & true, decided, true)], axis=-1)
    if task == "va":
        valid = valid_va(tgt)
        x = np.where(valid, out.astype(np.float64), 0.0)
        y = np.where(valid, tgt.astype(np.float64), 0.0)
        return np.stack([_per_video(v, arr, n_videos) for arr in (valid, x, y, x * x, y * y, x * y)], axis=-1)
    raise ValueError(f"unknown task {task!r}")


def metric_from_statistics(task: str, stats: np.ndarray) -> np.ndarray:
    """The task's metric from summed statistics ``(..., K, S)`` (leading axes = resamples)."""
    if task in ("expr", "au"):
        tp, pc, tc = stats[..., 0], stats[..., 1], stats[..., 2]
        denom = pc + tc
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)
        return f1.mean(axis=-1)
    n, sx, sy, sxx, syy, sxy = (stats[..., i] for i in range(6))
    safe = np.maximum(n, 1)
    mx, my = sx / safe, sy / safe
    vx, vy, cov = sxx / safe - mx * mx, syy / safe - my * my, sxy / safe - mx * my
    denom = vx + vy + (mx - my) ** 2
    ccc = np.divide(2 * cov, denom, out=np.zeros_like(denom), where=(denom > 1e-15) & (n > 0))
    return ccc.mean(axis=-1)


# ----------------------------------------------------------------------------- runs and pairing

def _tasks_of(run: ScoredRun) -> tuple[str, ...]:
    p = run.predictions
    return p.task_keys if isinstance(p, ValidationSummary) else p.tasks


def _predictions(run: ScoredRun) -> Predictions:
    """The predictions of a run on the frame-level path (a summary takes :func:`_prepare_summaries`)."""
    if not isinstance(run.predictions, Predictions):
        raise TypeError(f"{run.name or 'a run'}: frame-level statistics need its predictions, not a summary")
    return run.predictions


def _metric_tasks(metric: str, runs: Sequence[ScoredRun]) -> tuple[str, ...]:
    if metric not in METRIC_TASKS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_TASKS)}")
    tasks = METRIC_TASKS[metric]
    for run in runs:
        have = _tasks_of(run)
        if metric == MTL_METRIC:
            if len(have) < 2:
                raise ValueError(f"{run.name or 'a run'}: {MTL_METRIC} needs a multi-task run, it has {have}")
        elif tasks[0] not in have:
            raise ValueError(f"{run.name or 'a run'}: no {get_task(tasks[0]).title.lower()} predictions for {metric}")
    if metric == MTL_METRIC:
        tasks = tuple(t for t in tasks if all(t in _tasks_of(r) for r in runs))
    return tasks


def _row_keys(runs: Sequence[ScoredRun]) -> list[np.ndarray]:
    """Integer (video, frame) keys per run, comparable across runs (faster than the string keys).
    Runs usually share one validation set: identical video columns are looked up once."""
    distinct: list[np.ndarray] = []
    which: list[int] = []  # per run, its video column's index in distinct
    for r in runs:
        video = _predictions(r).video
        found = next((k for k, d in enumerate(distinct)
                      if video is d or (video.shape == d.shape and np.array_equal(video, d))), None)
        if found is None:
            found = len(distinct)
            distinct.append(video)
        which.append(found)
    vocabulary = np.unique(np.concatenate(distinct))
    codes = [np.searchsorted(vocabulary, d).astype(np.int64) for d in distinct]
    span = max(int(_predictions(r).frame.max(initial=0)) for r in runs) + 2
    return [codes[k] * span + _predictions(r).frame + 1 for r, k in zip(runs, which, strict=True)]


def _common_rows(runs: Sequence[ScoredRun], keys: Sequence[np.ndarray], task: str) -> list[np.ndarray]:
    """For each run, the row indices of the frames that every run predicted with a valid ``task`` label,
    in one shared order (sorted by video/frame key)."""
    keyed = []
    for run, run_keys in zip(runs, keys, strict=True):
        rows = np.nonzero(_task_rows(_predictions(run), task))[0]
        keyed.append((run_keys[rows], rows))
    common = np.unique(keyed[0][0])
    for k, _ in keyed[1:]:
        if not (k.shape == keyed[0][0].shape and np.array_equal(k, keyed[0][0])):  # the same frames: nothing to do
            common = np.intersect1d(common, k)
    out = []
    for k, rows in keyed:
        order = np.argsort(k, kind="stable")
        out.append(rows[order[np.searchsorted(k[order], common)]])
    return out


def _prepare(sides: Sequence[Sequence[ScoredRun]], metric: str) -> tuple[list[list[dict]], int, int, float]:
    runs = [r for side in sides for r in side]
    if any(len(side) == 0 for side in sides):
        raise ValueError("each side needs at least one run")
    tasks = _metric_tasks(metric, runs)
    if any(isinstance(r.predictions, ValidationSummary) for r in runs):
        return _prepare_summaries(sides, metric, tasks)
    keys = _row_keys(runs)
    per_task_rows = {t: _common_rows(runs, keys, t) for t in tasks}
    videos = np.unique(np.concatenate([_predictions(runs[0]).video[per_task_rows[t][0]] for t in tasks]))
    n_frames = len(np.unique(np.concatenate([keys[0][per_task_rows[t][0]] for t in tasks])))
    if len(videos) == 0:
        raise ValueError(f"no validation frame with a {metric} label is shared by the runs compared")
    first = _predictions(runs[0])
    levels = no_skill_levels({t: first.targets[t][per_task_rows[t][0]] for t in tasks}, first.expression_space)
    no_skill = float(sum(levels[get_task(t).metric] for t in tasks))
    # Every run's rows of a task are in one shared (video, frame) order: their video codes are run 0's.
    codes = {t: np.searchsorted(videos, first.video[per_task_rows[t][0]]) for t in tasks}
    prepared: list[list[dict]] = []
    i = 0
    for side in sides:
        side_stats = []
        for run in side:
            by_task = {}
            for t in tasks:
                sub = _predictions(run).select(per_task_rows[t][i])
                by_task[t] = video_statistics(sub, t, codes[t], len(videos),
                                              run.au_thresholds if t == "au" else None)
            side_stats.append(by_task)
            i += 1
        prepared.append(side_stats)
    return prepared, len(videos), n_frames, no_skill


# ----------------------------------------------------------------------------- per-video summaries

def summarise(predictions: Predictions, au_thresholds: Sequence[float] | np.ndarray | None = None
              ) -> ValidationSummary:
    """The per-video sums of ``predictions`` that a published run carries instead of frame labels.

    Computed on the same rows, in the same order and with the same functions as the statistics of a
    predictions file (each task's labelled frames, sorted by video and frame), so that every figure
    and interval from the summary equals the one from the predictions, bit for bit."""
    run = ScoredRun(predictions, au_thresholds)
    keys = _row_keys([run])[0]
    rows = {t: _common_rows([run], [keys], t)[0] for t in predictions.tasks}
    videos = np.unique(np.concatenate([predictions.video[r] for r in rows.values()]))
    n = len(videos)
    tasks: dict[str, TaskSummary] = {}
    for task, task_rows in rows.items():
        sub = predictions.select(task_rows)
        codes = np.searchsorted(videos, sub.video)
        counts = _per_video(codes, valid_au(sub.targets["au"]), n) if task == "au" else None
        tasks[task] = TaskSummary(video_statistics(sub, task, codes, n, au_thresholds if task == "au" else None),
                                  np.bincount(codes, minlength=n), _fingerprint(sub, task), counts)
    frames_any = {task_set_key(subset): len(np.unique(np.concatenate([keys[rows[t]] for t in subset])))
                  for k in range(1, len(rows) + 1) for subset in itertools.combinations(rows, k)}
    thresholds = None
    if "au" in rows and au_thresholds is not None:
        thresholds = tuple(float(x) for x in np.broadcast_to(np.asarray(au_thresholds, float), (len(AU_NAMES),)))
    return ValidationSummary(tuple(str(v) for v in videos), predictions.expression_space, tasks, frames_any,
                             thresholds)


def _fingerprint(scored: Predictions, task: str) -> str:
    """SHA-256 of the scored rows: their video names, frame numbers and labels of ``task``."""
    digest = hashlib.sha256(task.encode())
    digest.update("\n".join(scored.keys().tolist()).encode("utf-8"))
    digest.update(np.ascontiguousarray(scored.targets[task]).tobytes())
    return digest.hexdigest()


def _no_skill_of_summary(summary: ValidationSummary, tasks: Sequence[str]) -> float:
    """The no-skill level of the tasks' metric sum from a summary's counts (as no_skill_levels from labels)."""
    total = 0.0
    for task in tasks:
        ts = summary.tasks[task]
        if task == "expr":
            total += no_skill_expression_from_counts(ts.statistics[:, :, 2].sum(axis=0))
        elif task == "au":
            assert ts.label_counts is not None  # load_summary requires them
            total += no_skill_au_from_counts(ts.statistics[:, :, 2].sum(axis=0), ts.label_counts.sum(axis=0))
        else:
            total += NO_SKILL_VA
    return total


def _prepare_summaries(sides: Sequence[Sequence[ScoredRun]], metric: str, tasks: tuple[str, ...]
                       ) -> tuple[list[list[dict]], int, int, float]:
    """:func:`_prepare` for runs of which at least one is a summary: every run must have been scored on
    the same frames with the same labels (a summary cannot be cut down to the frames two runs share)."""
    runs = [r for side in sides for r in side]
    summaries = [r.predictions if isinstance(r.predictions, ValidationSummary)
                 else summarise(r.predictions, r.au_thresholds) for r in runs]
    for task in tasks:
        if len({s.tasks[task].fingerprint for s in summaries}) > 1:
            raise ValueError(f"the runs compared were not scored on the same validation frames and "
                             f"{get_task(task).title.lower()} labels; a per-video summary pairs only runs scored on "
                             "the same frames")
    first = summaries[0]
    labelled = np.zeros(len(first.videos), dtype=bool)
    for task in tasks:
        labelled |= first.tasks[task].frames > 0
    videos = np.asarray(first.videos)[labelled]
    if len(videos) == 0:
        raise ValueError(f"no validation frame with a {metric} label is shared by the runs compared")
    prepared: list[list[dict]] = []
    i = 0
    for side in sides:
        side_stats = []
        for _ in side:
            summary = summaries[i]
            names = np.asarray(summary.videos)
            index = np.searchsorted(names, videos)
            if (index >= len(names)).any() or not np.array_equal(names[np.minimum(index, len(names) - 1)], videos):
                raise ValueError("a summary lacks a video its fingerprint says it scored")
            side_stats.append({t: summary.tasks[t].statistics[index] for t in tasks})
            i += 1
        prepared.append(side_stats)
    return prepared, len(videos), first.frames_any[task_set_key(tasks)], _no_skill_of_summary(first, tasks)


def _score(stats: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The metric (sum over its tasks) for each row of ``weights`` (B, V)."""
    total: float | np.ndarray = 0.0
    for task, s in stats.items():
        summed = np.tensordot(weights, s, axes=(1, 0))
        total = total + metric_from_statistics(task, summed)
    return np.asarray(total)


def video_weights(n_videos: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_videos) counts: how often each video is drawn in each cluster-bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_videos, np.full(n_videos, 1.0 / n_videos), size=resamples).astype(np.float64)


def _interval(sides: Sequence[Sequence[ScoredRun]], metric: str, signs: Sequence[float], resamples: int,
              level: float, seed: int) -> Interval:
    prepared, n_videos, n_frames, no_skill = _prepare(sides, metric)
    weights = video_weights(n_videos, resamples, seed)
    ones = np.ones((1, n_videos))
    point, boot, seed_var, per_seed, counts, dfs_terms = 0.0, 0.0, 0.0, [], [], []
    for sign, side in zip(signs, prepared, strict=True):
        full = np.array([_score(s, ones)[0] for s in side])
        resampled = np.mean([_score(s, weights) for s in side], axis=0)
        point += sign * full.mean()
        boot = boot + sign * resampled
        n = len(side)
        var_term = full.var(ddof=1) / n if n > 1 else 0.0
        seed_var += var_term
        dfs_terms.append((var_term, n))
        per_seed.append(tuple(float(x) for x in full))
        counts.append(n)
    video_var = float(np.var(boot, ddof=1)) if resamples > 1 else 0.0
    total = video_var + seed_var
    denom = sum(v * v / (n - 1) for v, n in dfs_terms if n > 1)
    df = total * total / denom if denom > 0 else math.inf
    half = t_quantile(0.5 + level / 2, df) * math.sqrt(total) if total > 0 else 0.0
    return Interval(float(point), float(point - half), float(point + half), level, tuple(counts), n_videos,
                    n_frames, math.sqrt(video_var), math.sqrt(seed_var), df, tuple(per_seed),
                    no_skill if len(sides) == 1 else math.nan)


def estimate(runs: Sequence[ScoredRun], metric: str, resamples: int = DEFAULT_RESAMPLES,
             level: float = DEFAULT_LEVEL, seed: int = 0) -> Interval:
    """Mean of ``metric`` over the seeds ``runs`` of one configuration, with its interval.

    Scored on the frames every run predicted (with a valid label for the metric's tasks).
    """
    return _interval([list(runs)], metric, (1.0,), resamples, level, seed)


def difference(a: Sequence[ScoredRun], b: Sequence[ScoredRun], metric: str, resamples: int = DEFAULT_RESAMPLES,
               level: float = DEFAULT_LEVEL, seed: int = 0) -> Interval:
    """``mean(a) - mean(b)`` of ``metric`` over seeds, paired on the same videos and frames, with its interval."""
    return _interval([list(a), list(b)], metric, (1.0, -1.0), resamples, level, seed)


def contrast(sides: Sequence[Sequence[ScoredRun]], signs: Sequence[float], metric: str,
             resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0) -> Interval:
    """``sum(sign * mean(side))`` of ``metric`` over several configurations, paired on the same videos
    and frames, with its interval (each side's seed spread enters as in :func:`difference`). With signs
    ``(+1, -1, -1, +1)`` over (A1, B1, A2, B2) it is a difference of differences, an interaction."""
    if len(sides) != len(signs) or not sides:
        raise ValueError(f"one sign per side: {len(sides)} sides, {len(signs)} signs")
    return _interval([list(side) for side in sides], metric, tuple(float(x) for x in signs), resamples, level,
                     seed)


__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "METRIC_TASKS",
    "Interval",
    "ScoredRun",
    "contrast",
    "difference",
    "estimate",
    "metric_from_statistics",
    "summarise",
    "t_quantile",
    "video_statistics",
    "video_weights",
]
