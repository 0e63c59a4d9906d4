"""affectmodel.statistics: video-cluster bootstrap, paired differences, seeds; calibration by simulation."""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest

from affectmodel import metrics, statistics
from affectmodel.predictions import Predictions
from affectmodel.statistics import ScoredRun
from affectmodel.tasks import AU_NAMES

K = 8  # expression classes (ABAW-8)
ONE_HOT = np.eye(K, dtype=np.float32)


def _random_predictions(seed: int, n_videos: int = 12, frames: int = 40, tasks=("expr", "au", "va"),
                        au_rate: float = 0.3) -> Predictions:
    rng = np.random.default_rng(seed)
    n = n_videos * frames
    video = np.repeat([f"vid{i:03d}" for i in range(n_videos)], frames)
    frame = np.tile(np.arange(1, frames + 1), n_videos)
    outputs, targets = {}, {}
    if "expr" in tasks:
        outputs["expr"] = rng.random((n, K))
        targets["expr"] = np.where(rng.random(n) < 0.1, -1, rng.integers(0, K, n))
    if "au" in tasks:
        outputs["au"] = rng.random((n, len(AU_NAMES)))
        targets["au"] = np.where(rng.random((n, len(AU_NAMES))) < 0.05, -1, rng.random((n, len(AU_NAMES))) < au_rate)
    if "va" in tasks:
        truth = rng.uniform(-1, 1, (n, 2))
        outputs["va"] = np.clip(0.5 * truth + rng.normal(0, 0.3, (n, 2)), -1, 1)
        targets["va"] = np.where(rng.random((n, 2)) < 0.05, -5, truth)
    return Predictions(video, frame, outputs, targets)


def test_t_quantile_matches_tables():
    for p, df, want in [(0.975, 1, 12.7062), (0.975, 2, 4.30265), (0.975, 4, 2.77645), (0.975, 30, 2.04227),
                        (0.975, math.inf, 1.95996), (0.995, 1e9, 2.57583), (0.025, 4, -2.77645)]:
        assert statistics.t_quantile(p, df) == pytest.approx(want, abs=2e-4)
    with pytest.raises(ValueError):
        statistics.t_quantile(1.0, 3)


def test_full_sample_point_estimate_equals_the_metrics_module():
    p = _random_predictions(0)
    thresholds = np.linspace(0.3, 0.7, len(AU_NAMES))
    expected = metrics.evaluate(p.outputs, p.targets, au_thresholds=thresholds)
    run = ScoredRun(p, thresholds)
    for metric in ("P_EXPR", "P_AU", "P_VA", "P_MTL"):
        est = statistics.estimate([run], metric, resamples=50)
        assert est.mean == pytest.approx(expected[metric], abs=1e-12)
        assert est.low < est.mean < est.high and est.n_seeds == (1,) and not est.seeds_known
        assert est.n_videos == 12 and est.seed_se == 0


def test_deterministic_given_seed_and_paired_difference_of_a_run_with_itself_is_zero():
    runs = [ScoredRun(_random_predictions(s)) for s in range(3)]
    a = statistics.estimate(runs, "P_AU", resamples=200, seed=7)
    assert a == statistics.estimate(runs, "P_AU", resamples=200, seed=7)
    assert a != statistics.estimate(runs, "P_AU", resamples=200, seed=8)
    same = statistics.difference(runs, runs, "P_EXPR", resamples=200)
    # The same runs on both sides: no difference and nothing from the videos, only run-to-run spread.
    assert same.mean == 0 and same.video_se == 0 and same.low == -same.high < 0
    single = np.array(same.per_seed[0])
    assert same.seed_se == pytest.approx(math.sqrt(2 * single.var(ddof=1) / 3))
    assert same.seeds_known and same.n_seeds == (3, 3) and not same.excludes_zero


def test_difference_pairs_rows_by_video_and_frame_not_by_position():
    p = _random_predictions(1)
    shuffled = p.select(np.random.default_rng(0).permutation(len(p)))
    d = statistics.difference([ScoredRun(p)], [ScoredRun(shuffled)], "P_VA", resamples=100)
    assert d.mean == pytest.approx(0, abs=1e-12) and d.video_se == pytest.approx(0, abs=1e-12)
    # Only frames present on both sides count.
    half = p.select(np.arange(len(p)) < len(p) // 2)
    d = statistics.difference([ScoredRun(p)], [ScoredRun(half)], "P_EXPR", resamples=100)
    assert d.n_videos == 6 and d.mean == pytest.approx(0, abs=1e-12)


def test_errors_name_the_problem():
    uni = ScoredRun(_random_predictions(0, tasks=("expr",)), name="uni-expr")
    with pytest.raises(ValueError, match="uni-expr.*action units"):
        statistics.estimate([uni], "P_AU")
    with pytest.raises(ValueError, match="P_MTL needs a multi-task run"):
        statistics.estimate([uni], "P_MTL")
    with pytest.raises(ValueError, match="unknown metric"):
        statistics.estimate([uni], "accuracy")


def test_cluster_bootstrap_is_wider_than_frame_count_suggests_when_videos_differ():
    # Each video's frames share one difficulty: the interval must reflect ~12 videos, not 480 frames.
    rng = np.random.default_rng(3)
    p = _random_predictions(3, tasks=("expr",))
    correct = rng.random(12)[np.searchsorted(np.unique(p.video), p.video)] > rng.random(len(p))
    pred = np.where(correct, np.maximum(p.targets["expr"], 0), (np.maximum(p.targets["expr"], 0) + 1) % K)
    p.outputs["expr"] = np.eye(K, dtype=np.float32)[pred]
    est = statistics.estimate([ScoredRun(p)], "P_EXPR", resamples=500)
    frame_level_se = math.sqrt(est.mean * (1 - est.mean) / len(p))
    assert est.video_se > 2 * frame_level_se


# ----------------------------------------------------------------------------- calibration by simulation

@functools.cache
def _validation_frames(n_videos: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Video names, frame numbers and (balanced) expression labels of a simulated validation set,
    made once per shape: every simulated run reads them (never writes)."""
    video = np.repeat(np.arange(n_videos).astype(str), frames)
    frame = np.tile(np.arange(1, frames + 1), n_videos)
    truth = np.tile(np.arange(frames) % K, n_videos)
    return video, frame, truth


def _simulated_run(rng, video_effect, effect_logit, seed_sd_logit, interaction_sd, frames):
    """Expression predictions whose accuracy depends on the video (shared by every model), the seed,
    and a model-by-video interaction; balanced classes, so P_EXPR is close to the accuracy."""
    n_videos = len(video_effect)
    logit = 0.0 + effect_logit + video_effect + rng.normal(0, seed_sd_logit) + rng.normal(0, interaction_sd, n_videos)
    p_correct = 1 / (1 + np.exp(-np.repeat(logit, frames)))
    video, frame, truth = _validation_frames(n_videos, frames)
    correct = rng.random(len(truth)) < p_correct
    pred = np.where(correct, truth, (truth + rng.integers(1, K, len(truth))) % K)
    return ScoredRun(Predictions(video, frame, {"expr": ONE_HOT[pred]}, {"expr": truth}))


def _simulate(n_studies: int, effect_logit: float, seed: int, n_videos: int = 70, frames: int = 60,
              seeds: int = 3) -> tuple[float, float, float]:
    """Share of studies whose interval excludes zero, the mean difference, and the mean single-run seed spread."""
    rng = np.random.default_rng(seed)
    decided, diffs, spreads = 0, [], []
    for study in range(n_studies):
        video_effect = rng.normal(0, 0.8, n_videos)   # some videos are much harder than others
        sides = [[_simulated_run(rng, video_effect, e, 0.05, 0.2, frames) for _ in range(seeds)]
                 for e in (effect_logit, 0.0)]
        d = statistics.difference(sides[0], sides[1], "P_EXPR", resamples=150, seed=study)
        decided += d.excludes_zero
        diffs.append(d.mean)
        spreads += [float(np.std(s, ddof=1)) for s in d.per_seed]
    return decided / n_studies, float(np.mean(diffs)), float(np.mean(spreads))


def test_no_true_effect_rarely_gives_a_verdict_and_a_real_effect_is_found():
    null_rate, null_mean, null_spread = _simulate(200, 0.0, seed=11)
    # A logit shift of 0.22 moves accuracy (and macro F1) near 0.5 by about +0.05.
    power, effect, spread = _simulate(100, 0.22, seed=12)
    print(f"\nno effect: 'helped/hurt' in {null_rate:.1%} of 200 studies (mean difference {null_mean:+.4f}, "
          f"seed spread {null_spread:.3f});"
          f"\neffect {effect:+.3f}: detected in {power:.0%} of 100 studies (seed spread {spread:.3f}); "
          "3 seeds per side, 70 validation videos")
    assert 0.01 <= null_spread <= 0.02 and 0.04 <= effect <= 0.06
    assert null_rate <= 0.10
    assert power >= 0.80


def test_random_outputs_score_the_threshold_half_figure_not_a_tuned_one():
    # A no-skill model (uniform random AU probabilities, AUs active 10 % of the time) on a small
    # validation set: thresholds tuned on the reported frames inflate P_AU; thresholds tuned on a
    # separate development set of videos leave it near the figure at 0.5.
    dev = _random_predictions(10, n_videos=40, tasks=("au",), au_rate=0.1)
    val = _random_predictions(11, n_videos=4, frames=25, tasks=("au",), au_rate=0.1)
    thresholds = metrics.tune_au_thresholds(dev.outputs["au"], dev.targets["au"])
    honest = statistics.estimate([ScoredRun(val, thresholds)], "P_AU", resamples=200)
    at_half = statistics.estimate([ScoredRun(val, None)], "P_AU", resamples=200)
    in_sample = metrics.au_f1(val.outputs["au"], val.targets["au"],
                              metrics.tune_au_thresholds(val.outputs["au"], val.targets["au"]))[0]
    print(f"\nno-skill P_AU: {at_half.mean:.3f} at 0.5, {honest.mean:.3f} tuned on development videos, "
          f"{in_sample:.3f} tuned on the reported frames")
    assert abs(honest.mean - at_half.mean) <= 0.05
    assert in_sample > max(honest.mean, at_half.mean) + 0.02


def test_an_estimate_carries_the_no_skill_level_of_its_frames():
    p = _random_predictions(4)
    run = ScoredRun(p)
    levels = metrics.no_skill_levels(p.targets)
    for metric in ("P_EXPR", "P_AU", "P_VA", "P_MTL"):
        est = statistics.estimate([run], metric, resamples=50)
        assert est.no_skill == pytest.approx(levels[metric]) and est.as_dict()["no_skill"] == est.no_skill
    # random outputs: the AU interval reaches the all-positive level, VA (half skill) clears 0
    assert statistics.estimate([run], "P_AU", resamples=200).above_no_skill is False
    assert statistics.estimate([run], "P_VA", resamples=200).above_no_skill is True
    assert math.isnan(statistics.difference([run], [run], "P_VA", resamples=20).no_skill)
    # only the frames shared by the runs count
    half = p.select(np.arange(len(p)) < len(p) // 2)
    est = statistics.estimate([run, ScoredRun(half)], "P_EXPR", resamples=20)
    assert est.no_skill == pytest.approx(metrics.no_skill_levels(half.targets)["P_EXPR"])


# ----------------------------------------------------------------------------- factor comparisons and interactions

def _simulate_contrast(n_studies: int, side_logits: list[float], signs: tuple[float, ...], seed: int,
                       n_videos: int = 70, frames: int = 60, seeds: int = 3) -> tuple[float, float]:
    """Share of studies whose interval of ``sum(sign * side)`` excludes zero, and the mean contrast.
    Every side shares the videos' difficulty (paired), each run has its own seed and model-by-video noise."""
    rng = np.random.default_rng(seed)
    decided, values = 0, []
    for study in range(n_studies):
        video_effect = rng.normal(0, 0.8, n_videos)
        sides = [[_simulated_run(rng, video_effect, logit, 0.05, 0.2, frames) for _ in range(seeds)]
                 for logit in side_logits]
        c = statistics.contrast(sides, signs, "P_EXPR", resamples=150, seed=study)
        decided += c.excludes_zero
        values.append(c.mean)
    return decided / n_studies, float(np.mean(values))


def test_a_factor_comparison_is_calibrated():
    """Reference and variant differ in one factor. No effect: at most 10 % verdicts; +0.05: found in
    at least 80 % (3 seeds per side, 70 validation videos)."""
    null_rate, null_mean = _simulate_contrast(200, [0.3, 0.3], (1.0, -1.0), seed=21)
    power, effect = _simulate_contrast(100, [0.3 + 0.22, 0.3], (1.0, -1.0), seed=22)
    print(f"\nfactor comparison: no effect -> verdict in {null_rate:.1%} of 200 (mean {null_mean:+.4f}); "
          f"effect {effect:+.3f} -> detected in {power:.0%} of 100")
    assert 0.04 <= effect <= 0.06 and abs(null_mean) < 0.01
    assert null_rate <= 0.10 and power >= 0.80


def test_an_interaction_is_calibrated():
    """Four configurations (multi and uni at the reference and at the variant level), with real main
    effects of both the setting and the factor. No interaction: at most 10 % verdicts. An interaction
    of +0.05 (the multi-task gain is 0.05 larger at the variant level) sums the noise of four
    configurations: with 3 seeds each it is found in about 60 % of studies, with 5 in at least 80 %."""
    multi, factor = 0.25, -0.3   # main effects (logits): multi-task helps, the variant level hurts both
    signs = (1.0, -1.0, -1.0, 1.0)  # (variant multi - variant uni) - (reference multi - reference uni)
    null = [multi + factor, factor, multi, 0.0]
    effect = [null[0] + 0.22, *null[1:]]
    null_rate, null_mean = _simulate_contrast(200, null, signs, seed=31)
    null_rate_5, _ = _simulate_contrast(100, null, signs, seed=33, seeds=5)
    power_3, _ = _simulate_contrast(100, effect, signs, seed=32)
    power, size = _simulate_contrast(100, effect, signs, seed=34, seeds=5)
    print(f"\ninteraction: none -> verdict in {null_rate:.1%} of 200 with 3 seeds, {null_rate_5:.0%} of 100 with 5 "
          f"(mean {null_mean:+.4f}); {size:+.3f} -> detected in {power_3:.0%} of 100 with 3 seeds, {power:.0%} with 5")
    assert 0.04 <= size <= 0.06 and abs(null_mean) < 0.01
    assert null_rate <= 0.10 and null_rate_5 <= 0.10
    assert power >= 0.80


# ----------------------------------------------------------------------------- per-video summaries

def _same_interval(a: statistics.Interval, b: statistics.Interval) -> bool:
    """Field by field, exactly (NaN equal to NaN)."""
    def same(x, y) -> bool:
        if isinstance(x, tuple):
            return len(x) == len(y) and all(same(u, v) for u, v in zip(x, y, strict=True))
        return x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
    return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


def test_summaries_give_the_intervals_of_the_predictions_exactly(tmp_path):
    """Per-video sums (written to a file and read back) give bit-identical estimates, differences and
    contrasts for the same resampling seed: the cluster bootstrap needs nothing else."""
    from study_fixtures import simulated_predictions

    from affectmodel.summaries import load_summary, save_summary

    skill = {"P_EXPR": 0.5, "P_AU": 0.5, "P_VA": 0.5}
    thresholds = [0.35] * len(AU_NAMES)
    frames = {"multi": [simulated_predictions(("expr", "au", "va"), skill, seed=s) for s in (0, 1, 2)]}
    frames.update({t: [simulated_predictions((t,), skill, seed=10 + s) for s in (0, 1)] for t in ("expr", "au", "va")})

    def summary(p: Predictions, name: str):
        return load_summary(save_summary(tmp_path / f"{name}.json", statistics.summarise(p, thresholds)))

    full = {k: [ScoredRun(p, thresholds, f"{k}/{i}") for i, p in enumerate(v)] for k, v in frames.items()}
    summed = {k: [ScoredRun(summary(p, f"{k}-{i}"), thresholds, f"{k}/{i}") for i, p in enumerate(v)]
              for k, v in frames.items()}
    for metric in ("P_EXPR", "P_AU", "P_VA", "P_MTL"):
        a = statistics.estimate(full["multi"], metric, resamples=300, seed=4)
        b = statistics.estimate(summed["multi"], metric, resamples=300, seed=4)
        assert _same_interval(a, b) and a.n_videos == 10 and a.n_frames == b.n_frames > 0, metric
        assert a.no_skill == b.no_skill and a.video_se > 0
    for task, metric in (("expr", "P_EXPR"), ("au", "P_AU"), ("va", "P_VA")):
        a = statistics.difference(full["multi"], full[task], metric, resamples=300, seed=9)
        assert _same_interval(a, statistics.difference(summed["multi"], summed[task], metric, resamples=300, seed=9))
        # a run folder against a published run: the same again
        assert _same_interval(a, statistics.difference(full["multi"], summed[task], metric, resamples=300, seed=9))
        assert not _same_interval(a, statistics.difference(summed["multi"], summed[task], metric, resamples=300,
                                                           seed=10))  # the seed is what is held fixed
    a = statistics.contrast([full["multi"], full["va"]], (1, -1), "P_VA", resamples=300, seed=2)
    assert _same_interval(a, statistics.contrast([summed["multi"], summed["va"]], (1, -1), "P_VA", resamples=300,
                                                 seed=2))


def test_summaries_pair_only_runs_scored_on_the_same_frames_and_labels():
    from study_fixtures import simulated_predictions

    skill = {"P_EXPR": 0.5, "P_AU": 0.5, "P_VA": 0.5}
    multi = [ScoredRun(statistics.summarise(simulated_predictions(("expr", "au", "va"), skill, seed=s)))
             for s in (0, 1)]
    uni = simulated_predictions(("va",), skill, seed=5)
    fewer = ScoredRun(statistics.summarise(uni.select(np.arange(len(uni)) < len(uni) - 24)))  # a video less
    relabelled = uni.select(np.arange(len(uni)))
    relabelled.targets["va"] = np.where(relabelled.targets["va"] > -2, -relabelled.targets["va"], -5)
    for other in (fewer, ScoredRun(statistics.summarise(relabelled))):
        with pytest.raises(ValueError, match="not scored on the same validation frames and valence"):
            statistics.difference(multi, [other], "P_VA", resamples=50)
    # predictions on other frames still pair on the frames they share (no summary involved)
    statistics.difference([ScoredRun(uni)], [ScoredRun(uni.select(np.arange(len(uni)) < 48))], "P_VA", resamples=50)
