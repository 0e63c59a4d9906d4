"""ABAW metrics against scikit-learn and a direct numpy CCC, with invalid labels mixed in."""
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import f1_score

from affectmodel import metrics
from affectmodel.tasks import ABAW8, AU_NAMES


def ccc_direct(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    cov = np.sum((x - x.mean()) * (y - y.mean())) / len(x)
    return 2 * cov / (np.sum((x - x.mean()) ** 2) / len(x) + np.sum((y - y.mean()) ** 2) / len(y)
                      + (x.mean() - y.mean()) ** 2)


@pytest.mark.parametrize("seed", range(5))
def test_expression_f1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, c = 200, 8
    target = rng.integers(0, c, n)
    target[rng.random(n) < 0.25] = -1
    scores = rng.normal(size=(n, c))
    pred = scores.argmax(1)
    keep = target >= 0
    expected = f1_score(target[keep], pred[keep], average="macro", labels=list(range(c)), zero_division=0)
    per_expected = f1_score(target[keep], pred[keep], average=None, labels=list(range(c)), zero_division=0)
    p, per = metrics.expression_f1(scores, target, c)  # scores (n, C) are reduced with argmax
    assert p == pytest.approx(expected)
    np.testing.assert_allclose(per, per_expected)
    assert metrics.expression_f1(pred, target, c)[0] == pytest.approx(expected)


def test_expression_f1_class_never_present_scores_zero():
    target = np.array([0, 0, 1, 1, 2, -1, -1])
    pred = np.array([0, 1, 1, 1, 2, 7, 7])  # class 7 only predicted on invalid rows -> dropped
    p, per = metrics.expression_f1(pred, target, 8)
    assert per[3:].tolist() == [0.0] * 5
    expected = f1_score(target[:5], pred[:5], average="macro", labels=list(range(8)), zero_division=0)
    assert p == pytest.approx(expected)
    assert p == pytest.approx(per[:3].sum() / 8)  # absent classes still count in the mean


def test_expression_f1_all_invalid():
    p, per = metrics.expression_f1(np.zeros(3, int), np.full(3, -1), 8)
    assert p == 0.0 and per.shape == (8,)


@pytest.mark.parametrize("seed", range(3))
def test_au_f1_matches_sklearn_per_au(seed):
    rng = np.random.default_rng(seed)
    n = 150
    target = rng.integers(0, 2, (n, 12)).astype(float)
    target[rng.random((n, 12)) < 0.3] = -1
    scores = rng.random((n, 12))
    thresholds = rng.uniform(0.2, 0.8, 12)
    for thr in (0.5, thresholds):
        t = np.broadcast_to(thr, (12,))
        per_expected = [f1_score(target[target[:, j] >= 0, j], scores[target[:, j] >= 0, j] >= t[j],
                                 zero_division=0) for j in range(12)]
        p, per = metrics.au_f1(scores, target, thr)
        np.testing.assert_allclose(per, per_expected)
        assert p == pytest.approx(np.mean(per_expected))


def test_au_f1_rare_au_never_positive():
    target = np.zeros((10, 12))
    target[:, 0] = 1
    scores = np.zeros((10, 12))
    scores[:, 0] = 0.9
    p, per = metrics.au_f1(scores, target)
    assert per[0] == 1.0 and per[1:].sum() == 0.0 and p == pytest.approx(1 / 12)


@pytest.mark.parametrize("seed", range(3))
def test_ccc_matches_direct_formula(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=300)
    y = 0.6 * x + rng.normal(0.2, 0.5, size=300)
    assert metrics.ccc(x, y) == pytest.approx(ccc_direct(x, y))
    assert metrics.ccc(x, x) == pytest.approx(1.0)
    assert metrics.ccc(x - x.mean(), -(x - x.mean())) == pytest.approx(-1.0)
    # CCC penalises a shift, unlike Pearson correlation
    assert metrics.ccc(x, x + 1) < 0.99 * np.corrcoef(x, x + 1)[0, 1]


def test_ccc_degenerate_cases():
    y = np.linspace(-1, 1, 20)
    assert metrics.ccc(np.full(20, 0.3), y) == pytest.approx(0.0, abs=1e-12)  # constant predictions
    assert metrics.ccc(np.full(5, 0.2), np.full(5, 0.2)) == 0.0  # both constant, equal: defined as 0
    assert metrics.ccc([], []) == 0.0
    assert np.isfinite(metrics.ccc(np.full(5, 0.2), np.full(5, 0.4)))


def test_va_ccc_drops_invalid_per_dimension():
    rng = np.random.default_rng(3)
    target = rng.uniform(-1, 1, (100, 2))
    target[rng.random((100, 2)) < 0.3] = -5
    pred = np.clip(target + rng.normal(0, 0.3, (100, 2)), -1, 1)
    p, v, a = metrics.va_ccc(pred, target)
    mv, ma = target[:, 0] != -5, target[:, 1] != -5
    assert v == pytest.approx(ccc_direct(pred[mv, 0], target[mv, 0]))
    assert a == pytest.approx(ccc_direct(pred[ma, 1], target[ma, 1]))
    assert p == pytest.approx((v + a) / 2)


def test_tune_au_thresholds_improves_f1():
    rng = np.random.default_rng(0)
    n = 400
    target = (rng.random((n, 12)) < 0.3).astype(float)
    # a badly calibrated model: positives score around 0.3, negatives around 0.1
    scores = np.where(target == 1, 0.3, 0.1) + rng.normal(0, 0.05, (n, 12))
    target[:, 11] = -1  # an AU without labels keeps 0.5
    thr = metrics.tune_au_thresholds(scores, target)
    assert thr.shape == (12,) and thr[11] == 0.5
    assert np.all((thr[:11] > 0.1) & (thr[:11] < 0.3))
    before, per_before = metrics.au_f1(scores, target)
    after, per_after = metrics.au_f1(scores, target, thr)
    assert after > before + 0.5
    assert np.all(per_after >= per_before)


def test_tune_au_thresholds_ties_keep_half():
    target = np.tile([0.0, 1.0], (6, 6)).T  # perfectly separable for any threshold in (0, 1)
    scores = target.copy()
    assert np.all(metrics.tune_au_thresholds(scores, target) == 0.5)


def test_evaluate_all_tasks_and_p_mtl():
    rng = np.random.default_rng(5)
    n = 120
    targets = {"expr": rng.integers(-1, 8, n), "au": rng.integers(-1, 2, (n, 12)).astype(float),
               "va": rng.uniform(-1, 1, (n, 2))}
    targets["va"][:10] = -5
    outputs = {"expr": rng.normal(size=(n, 8)), "au": rng.random((n, 12)), "va": rng.uniform(-1, 1, (n, 2))}
    res = metrics.evaluate(outputs, targets)
    assert res["P_EXPR"] == pytest.approx(metrics.expression_f1(outputs["expr"], targets["expr"], 8)[0])
    assert res["P_AU"] == pytest.approx(metrics.au_f1(outputs["au"], targets["au"])[0])
    assert res["P_VA"] == pytest.approx(metrics.va_ccc(outputs["va"], targets["va"])[0])
    assert res["P_MTL"] == pytest.approx(res["P_EXPR"] + res["P_AU"] + res["P_VA"])
    assert list(res["per_class_f1"]) == list(ABAW8.labels) and list(res["per_au_f1"]) == list(AU_NAMES)
    assert res["n_expr"] == (targets["expr"] >= 0).sum() and res["n_va"] == n - 10
    single = metrics.evaluate({"au": outputs["au"]}, targets)
    assert "P_MTL" not in single and "P_EXPR" not in single


def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(7)
    target = rng.integers(-1, 8, 300)
    pred = rng.integers(0, 8, 300)
    keep = target >= 0
    cm = metrics.confusion_matrix(pred, target, 8)
    np.testing.assert_array_equal(cm, sk_confusion_matrix(target[keep], pred[keep], labels=list(range(8))))
    assert cm.sum() == keep.sum()


def test_no_skill_levels_are_what_constant_predictors_score():
    """The declared levels equal the metric of the predictor they describe: the best constant
    expression, every AU on, a constant VA output; P_MTL sums them."""
    rng = np.random.default_rng(8)
    n = 400
    expr = np.where(rng.random(n) < 0.1, -1, rng.choice(8, n, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.0]))
    au = (rng.random((n, 12)) < np.linspace(0.02, 0.9, 12)).astype(float)
    au[rng.random((n, 12)) < 0.1] = -1
    au[:, 5] = -1  # an AU without a valid label scores 0 for every predictor
    va = np.where(rng.random((n, 2)) < 0.05, -5, rng.uniform(-1, 1, (n, 2)))
    levels = metrics.no_skill_levels({"expr": expr, "au": au, "va": va})
    best_constant = max(metrics.expression_f1(np.full(n, c), expr, 8)[0] for c in range(8))
    assert levels["P_EXPR"] == pytest.approx(best_constant)
    assert levels["P_EXPR"] == pytest.approx(metrics.expression_f1(np.zeros(n, int), expr, 8)[0])  # the majority
    assert levels["P_AU"] == pytest.approx(metrics.au_f1(np.ones((n, 12)), au)[0])
    assert levels["P_AU"] >= metrics.au_f1(np.zeros((n, 12)), au)[0]  # all-negative scores 0
    assert levels["P_VA"] == 0.0 and metrics.va_ccc(np.full((n, 2), 0.3), va)[0] == pytest.approx(0.0, abs=1e-12)
    assert levels["ccc_valence"] == levels["ccc_arousal"] == 0.0
    assert levels["P_MTL"] == pytest.approx(levels["P_EXPR"] + levels["P_AU"])
    only_va = metrics.no_skill_levels({"va": va})
    assert only_va == {"P_VA": 0.0, "ccc_valence": 0.0, "ccc_arousal": 0.0}
    assert metrics.no_skill_expression(np.full(5, -1), 8) == 0.0
    # a 7-class label space divides by 7
    assert metrics.no_skill_levels({"expr": np.zeros(10, int)}, "abaw7")["P_EXPR"] == pytest.approx(1 / 7)
