"""Masked losses and task weighting, each checked against an independent computation."""
import math

import numpy as np
import pytest
import torch

from affectmodel import losses
from affectmodel.losses import LossConfig, MultiTaskLoss, au_loss, expression_loss, va_loss


def log_softmax_np(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def sigmoid_np(x):
    return 1 / (1 + np.exp(-x))


def ccc_np(x, y):
    return 2 * np.mean((x - x.mean()) * (y - y.mean())) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


@pytest.fixture
def expr_batch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(10, 8, generator=g)
    target = torch.tensor([0, 3, -1, 7, 2, -1, 4, 4, 1, 6])
    return logits, target


# ------------------------------------------------------------------ expression

def test_ce_matches_manual_and_ignores_invalid(expr_batch):
    logits, target = expr_batch
    lp = log_softmax_np(logits.numpy())
    keep = target.numpy() >= 0
    expected = -lp[keep, target.numpy()[keep]].mean()
    assert expression_loss(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_weighted_ce_matches_manual(expr_batch):
    logits, target = expr_batch
    w = torch.linspace(0.5, 2.0, 8)
    lp = log_softmax_np(logits.numpy())
    t = target.numpy()
    keep = t >= 0
    wy = w.numpy()[t[keep]]
    expected = (wy * -lp[keep, t[keep]]).sum() / wy.sum()
    assert expression_loss(logits, target, "weighted_ce", class_weights=w).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="class_weights"):
        expression_loss(logits, target, "weighted_ce")


def test_label_smoothing_matches_manual(expr_batch):
    logits, target = expr_batch
    eps = 0.1
    lp = log_softmax_np(logits.numpy())
    t = target.numpy()
    keep = t >= 0
    expected = ((1 - eps) * -lp[keep, t[keep]] + eps * -lp[keep].mean(1)).mean()
    got = expression_loss(logits, target, "ce", label_smoothing=eps).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert got != pytest.approx(expression_loss(logits, target).item())


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_focal_matches_manual(expr_batch, gamma):
    logits, target = expr_batch
    t = target.numpy()
    keep = t >= 0
    lp = log_softmax_np(logits.numpy())[keep, t[keep]]
    expected = (-(1 - np.exp(lp)) ** gamma * lp).mean()
    assert expression_loss(logits, target, "focal", focal_gamma=gamma).item() == pytest.approx(expected, rel=1e-5)
    # alpha-weighted focal: per-row weight of the true class, normalised like weighted CE
    w = torch.linspace(2.0, 0.5, 8)
    wy = w.numpy()[t[keep]]
    expected_w = (wy * -(1 - np.exp(lp)) ** gamma * lp).sum() / wy.sum()
    got = expression_loss(logits, target, "focal", class_weights=w, focal_gamma=gamma).item()
    assert got == pytest.approx(expected_w, rel=1e-5)


def test_focal_gamma_zero_equals_ce_and_smoothing(expr_batch):
    logits, target = expr_batch
    for eps in (0.0, 0.2):
        ce = expression_loss(logits, target, "ce", label_smoothing=eps)
        focal = expression_loss(logits, target, "focal", label_smoothing=eps, focal_gamma=0.0)
        assert focal.item() == pytest.approx(ce.item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["ce", "weighted_ce", "focal"])
def test_expression_invalid_rows_contribute_nothing(expr_batch, kind):
    logits, target = expr_batch
    logits = logits.clone().requires_grad_(True)
    w = torch.linspace(0.5, 2.0, 8)
    loss = expression_loss(logits, target, kind, class_weights=w, label_smoothing=0.1)
    keep = target >= 0
    only_valid = expression_loss(logits.detach()[keep], target[keep], kind, class_weights=w, label_smoothing=0.1)
    assert loss.item() == pytest.approx(only_valid.item(), rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[~keep] == 0) and logits.grad[keep].abs().sum() > 0


@pytest.mark.parametrize("kind", ["ce", "weighted_ce", "focal"])
def test_expression_all_invalid_is_zero_with_finite_grad(kind):
    logits = torch.randn(4, 8, requires_grad=True)
    loss = expression_loss(logits, torch.full((4,), -1), kind, class_weights=torch.ones(8))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.all(logits.grad == 0)


def test_unknown_loss_names_raise_even_without_valid_rows():
    with pytest.raises(ValueError, match="unknown expression loss"):
        expression_loss(torch.zeros(2, 8), torch.full((2,), -1), "hinge")
    with pytest.raises(ValueError, match="unknown AU loss"):
        au_loss(torch.zeros(2, 12), torch.full((2, 12), -1.0), "dice")
    with pytest.raises(ValueError, match="unknown VA loss"):
        va_loss(torch.zeros(2, 2), torch.full((2, 2), -5.0), "l1")
    with pytest.raises(ValueError, match="pos_weight"):
        au_loss(torch.zeros(2, 12), torch.zeros(2, 12), "weighted_bce")


# ------------------------------------------------------------------ action units

@pytest.fixture
def au_batch():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 12, generator=g) * 2
    target = torch.randint(0, 2, (6, 12), generator=g).float()
    target[torch.rand(6, 12, generator=g) < 0.3] = -1
    target[0] = -1
    return logits, target


def _bce_np(x, y, pw=None, gamma=None):
    p = sigmoid_np(x)
    pw = np.ones_like(x) if pw is None else np.broadcast_to(pw, x.shape)
    per = -(pw * y * np.log(p) + (1 - y) * np.log(1 - p))
    if gamma is not None:
        p_t = np.where(y == 1, p, 1 - p)
        per = (1 - p_t) ** gamma * per
    return per


@pytest.mark.parametrize("kind", ["bce", "weighted_bce", "focal"])
def test_au_losses_match_manual(au_batch, kind):
    logits, target = au_batch
    pw = torch.linspace(0.5, 10, 12)
    x, y = logits.numpy().astype(np.float64), target.numpy()
    m = y >= 0
    if kind == "bce":
        per = _bce_np(x, np.clip(y, 0, 1))
    elif kind == "weighted_bce":
        per = _bce_np(x, np.clip(y, 0, 1), pw.numpy())
    else:
        per = _bce_np(x, np.clip(y, 0, 1), pw.numpy(), gamma=2.0)
    expected = per[m].mean()
    got = au_loss(logits, target, kind, pos_weight=pw, focal_gamma=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # bce ignores pos_weight even when given
    if kind == "bce":
        assert au_loss(logits, target, "bce").item() == pytest.approx(got.item())


@pytest.mark.parametrize("kind", ["bce", "weighted_bce", "focal"])
def test_au_masking_and_all_invalid(au_batch, kind):
    logits, target = au_batch
    logits = logits.clone().requires_grad_(True)
    pw = torch.full((12,), 3.0)
    au_loss(logits, target, kind, pos_weight=pw).backward()
    invalid = target == -1
    assert torch.all(logits.grad[invalid] == 0) and logits.grad[~invalid].abs().sum() > 0
    x = torch.randn(3, 12, requires_grad=True)
    loss = au_loss(x, torch.full((3, 12), -1.0), kind, pos_weight=pw)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.all(x.grad == 0)


# ------------------------------------------------------------------ valence / arousal

@pytest.fixture
def va_batch():
    g = torch.Generator().manual_seed(3)
    target = torch.rand(16, 2, generator=g) * 2 - 1
    pred = torch.tanh(target + 0.4 * torch.randn(16, 2, generator=g))
    target[[1, 5, 9], 0] = -5
    target[[2, 3], 1] = -5
    return pred, target


def test_va_losses_match_manual(va_batch):
    pred, target = va_batch
    p, t = pred.numpy().astype(np.float64), target.numpy().astype(np.float64)
    mv, ma = t[:, 0] != -5, t[:, 1] != -5
    ccc_term = 1 - (ccc_np(p[mv, 0], t[mv, 0]) + ccc_np(p[ma, 1], t[ma, 1])) / 2
    mse_term = (np.mean((p[mv, 0] - t[mv, 0]) ** 2) + np.mean((p[ma, 1] - t[ma, 1]) ** 2)) / 2
    assert va_loss(pred, target, "ccc").item() == pytest.approx(ccc_term, rel=1e-5)
    assert va_loss(pred, target, "mse").item() == pytest.approx(mse_term, rel=1e-5)
    assert va_loss(pred, target, "ccc+mse", mse_weight=0.3).item() == pytest.approx(
        0.7 * ccc_term + 0.3 * mse_term, rel=1e-5)


def test_va_ccc_loss_agrees_with_metric(va_batch):
    from affectmodel.metrics import va_ccc
    pred, target = va_batch
    p_va, _, _ = va_ccc(pred.numpy(), target.numpy())
    assert va_loss(pred, target, "ccc").item() == pytest.approx(1 - p_va, abs=1e-5)


@pytest.mark.parametrize("kind", ["ccc", "mse", "ccc+mse"])
def test_va_masking_and_all_invalid(va_batch, kind):
    pred, target = va_batch
    pred = pred.clone().requires_grad_(True)
    va_loss(pred, target, kind).backward()
    invalid = target == -5
    assert torch.all(pred.grad[invalid] == 0) and pred.grad[~invalid].abs().sum() > 0
    x = torch.zeros(4, 2, requires_grad=True)
    loss = va_loss(x, torch.full((4, 2), -5.0), kind)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_va_single_valid_value_gives_mse_but_no_ccc():
    pred = torch.tensor([[0.5, 0.1], [0.2, -0.3], [0.0, 0.4]], requires_grad=True)
    target = torch.tensor([[0.1, -5.0], [-5.0, 0.2], [-5.0, -0.1]])  # valence: 1 valid value
    mse_a = ((-0.3 - 0.2) ** 2 + (0.4 + 0.1) ** 2) / 2
    assert va_loss(pred, target, "mse").item() == pytest.approx(((0.5 - 0.1) ** 2 + mse_a) / 2)
    ccc_a = ccc_np(np.array([-0.3, 0.4]), np.array([0.2, -0.1]))
    loss = va_loss(pred, target, "ccc")
    assert loss.item() == pytest.approx(1 - ccc_a, rel=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_constant_predictions_ccc_loss_is_finite():
    pred = torch.zeros(8, 2, requires_grad=True)
    target = torch.linspace(-1, 1, 16).reshape(8, 2)
    loss = va_loss(pred, target, "ccc")
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_ccc_alone_does_not_pull_an_uncorrelated_output_back_but_ccc_plus_mse_does():
    # An output that does not yet follow the labels (noise, too spread and off-centre), as at the
    # start of training: 1 - CCC gives no gradient on its mean and almost none on its spread, so
    # nothing stops Adam's steps from pushing it into the bound; the MSE term pulls both back.
    g = torch.Generator().manual_seed(0)
    target = torch.stack([torch.rand(512, generator=g) * 1.6 - 0.8, 0.25 + 0.4 * torch.randn(512, generator=g)], 1)
    noise = torch.randn(512, 2, generator=g)
    for kind, pulls in (("ccc", False), ("ccc+mse", True)):
        shift = torch.zeros(2, requires_grad=True)
        scale = torch.ones(2, requires_grad=True)
        va_loss(0.9 + scale * 2.0 * noise + shift, target, kind).backward()
        assert shift.grad is not None and scale.grad is not None
        if pulls:  # the mean goes down towards the labels', the spread shrinks towards theirs
            assert (shift.grad > 0.1).all() and (scale.grad > 0.1).all()
        else:
            assert shift.grad.abs().max() < 0.02 and scale.grad.abs().max() < 0.02


# ------------------------------------------------------------------ class statistics

def test_inverse_frequency_weights():
    counts = [100, 50, 0, 25]
    w = losses.inverse_frequency_weights(counts).numpy()
    assert w[2] == 0
    assert w.mean() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(2.0) and w[3] / w[0] == pytest.approx(4.0)


def test_au_pos_weight():
    w = losses.au_pos_weight([10, 0, 500], [90, 1000, 500], max_weight=50)
    np.testing.assert_allclose(w.numpy(), [9.0, 50.0, 1.0])


# ------------------------------------------------------------------ multi-task

def _mtl_batch(n=8):
    g = torch.Generator().manual_seed(4)
    outputs = {"expr": torch.randn(n, 8, generator=g), "au": torch.randn(n, 12, generator=g),
               "va": torch.tanh(torch.randn(n, 2, generator=g))}
    targets = {"expr": torch.randint(-1, 8, (n,), generator=g),
               "au": torch.randint(0, 2, (n, 12), generator=g).float(),
               "va": torch.rand(n, 2, generator=g) * 2 - 1}
    return outputs, targets


def test_fixed_weighting():
    outputs, targets = _mtl_batch()
    cfg = LossConfig(task_weights={"expr": 2.0, "au": 0.5, "va": 1.5})
    total, parts = MultiTaskLoss(["expr", "au", "va"], cfg)(outputs, targets)
    assert parts["expr"].item() == pytest.approx(expression_loss(outputs["expr"], targets["expr"]).item())
    assert parts["au"].item() == pytest.approx(au_loss(outputs["au"], targets["au"]).item())
    assert parts["va"].item() == pytest.approx(va_loss(outputs["va"], targets["va"]).item())
    expected = 2.0 * parts["expr"] + 0.5 * parts["au"] + 1.5 * parts["va"]
    assert total.item() == pytest.approx(expected.item())


def test_uni_task_loss_uses_only_its_task():
    outputs, targets = _mtl_batch()
    total, parts = MultiTaskLoss(["au"])({"au": outputs["au"]}, targets)
    assert list(parts) == ["au"] and total.item() == pytest.approx(parts["au"].item())


def test_uncertainty_weighting_formula_and_gradients():
    outputs, targets = _mtl_batch()
    crit = MultiTaskLoss("expr,va", LossConfig(weighting="uncertainty"))
    assert set(crit.log_vars) == {"expr", "va"}
    assert {id(p) for p in crit.parameters()} == {id(p) for p in crit.log_vars.values()}
    with torch.no_grad():
        crit.log_vars["expr"].fill_(0.7)
        crit.log_vars["va"].fill_(-0.3)
    total, parts = crit(outputs, targets)
    le, lv = parts["expr"].item(), parts["va"].item()
    assert total.item() == pytest.approx(math.exp(-0.7) * le + 0.7 + math.exp(0.3) * lv - 0.3, rel=1e-6)
    total.backward()
    # d/ds [exp(-s) L + s] = 1 - exp(-s) L
    assert crit.log_vars["expr"].grad.item() == pytest.approx(1 - math.exp(-0.7) * le, rel=1e-5)
    assert crit.log_vars["va"].grad.item() == pytest.approx(1 - math.exp(0.3) * lv, rel=1e-5)


def test_multitask_all_invalid_batch_is_finite():
    outputs, _ = _mtl_batch(4)
    outputs = {k: v.clone().requires_grad_(True) for k, v in outputs.items()}
    targets = {"expr": torch.full((4,), -1), "au": torch.full((4, 12), -1.0), "va": torch.full((4, 2), -5.0)}
    for weighting in ("fixed", "uncertainty"):
        total, parts = MultiTaskLoss("expr,au,va", LossConfig(weighting=weighting))(outputs, targets)
        assert all(p.item() == 0.0 for p in parts.values()) and torch.isfinite(total)
        total.backward()
        assert all(torch.isfinite(v.grad).all() for v in outputs.values())


def test_class_and_pos_weights_reach_the_losses():
    outputs, targets = _mtl_batch()
    cw, pw = torch.linspace(0.2, 3, 8), torch.linspace(1, 20, 12)
    crit = MultiTaskLoss("expr,au", LossConfig(expr="weighted_ce", au="weighted_bce"), class_weights=cw, pos_weight=pw)
    _, parts = crit(outputs, targets)
    assert parts["expr"].item() == pytest.approx(
        expression_loss(outputs["expr"], targets["expr"], "weighted_ce", class_weights=cw).item())
    assert parts["au"].item() == pytest.approx(au_loss(outputs["au"], targets["au"], "weighted_bce", pw).item())


def test_loss_config_validation():
    with pytest.raises(ValueError, match="unknown expr loss"):
        LossConfig(expr="mse")
    with pytest.raises(ValueError, match="unknown va loss"):
        LossConfig(va="bce")
    with pytest.raises(ValueError, match="task weighting"):
        LossConfig(weighting="gradnorm")


# ------------------------------------------------------------------ GPU-path correctness, on CPU

@pytest.mark.parametrize("kind", ["ce", "focal"])
def test_fp16_logits_without_valid_rows_give_zero_not_nan(kind):
    # A sum of fp16 logits overflows to inf; inf * 0 is NaN. The empty-batch zero must not sum them.
    logits = torch.full((64, 8), 60000.0, dtype=torch.float16, requires_grad=True)
    assert torch.isinf(logits.detach().sum())
    loss = expression_loss(logits, torch.full((64,), -1), kind)
    assert loss.dtype == torch.float32 and loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    au = torch.full((64, 12), 60000.0, dtype=torch.float16, requires_grad=True)
    assert au_loss(au, torch.full((64, 12), -1.0)).item() == 0.0
    va = torch.full((64, 2), 60000.0, dtype=torch.float16)
    assert va_loss(va, torch.full((64, 2), 9.0), "ccc+mse").item() == 0.0


def test_fp16_logits_give_the_float32_loss(expr_batch):
    logits, target = expr_batch
    half = logits.half()
    for kind in ("ce", "focal"):
        assert expression_loss(half, target, kind).item() == pytest.approx(
            expression_loss(half.float(), target, kind).item(), rel=1e-6)


def test_uncertainty_weight_of_a_task_without_labels_in_the_batch_is_not_pushed():
    outputs, targets = _mtl_batch()
    targets = {**targets, "va": torch.full_like(targets["va"], float("nan"))}  # no VA label here
    crit = MultiTaskLoss("expr,va", LossConfig(weighting="uncertainty"))
    with torch.no_grad():
        crit.log_vars["expr"].fill_(0.7)
        crit.log_vars["va"].fill_(-0.3)
    total, parts = crit(outputs, targets)
    le = parts["expr"].item()
    assert parts["va"].item() == 0.0
    assert total.item() == pytest.approx(math.exp(-0.7) * le + 0.7, rel=1e-6)  # no "- 0.3" for VA
    total.backward()
    assert crit.log_vars["va"].grad.item() == 0.0
    assert crit.log_vars["expr"].grad.item() == pytest.approx(1 - math.exp(-0.7) * le, rel=1e-5)


class _HostSyncRecorder(torch.overrides.TorchFunctionMode):
    """Records tensor operations that would make a CUDA step wait for the device."""

    SYNCING = frozenset({"__bool__", "item", "tolist", "__float__", "__int__", "__index__", "nonzero", "masked_select",
                         "numpy", "cpu"})

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in self.SYNCING:
            self.calls.append(name)
        if name == "__getitem__" and isinstance(args[1], torch.Tensor) and args[1].dtype == torch.bool:
            self.calls.append("boolean indexing")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty"])
def test_losses_forward_and_backward_have_no_host_sync(weighting):
    outputs, targets = _mtl_batch()
    outputs = {k: v.clone().requires_grad_(True) for k, v in outputs.items()}
    crit = MultiTaskLoss("expr,au,va", LossConfig(expr="focal", au="focal", va="ccc+mse", weighting=weighting),
                         class_weights=torch.linspace(0.5, 2, 8))
    with _HostSyncRecorder() as recorder:
        total, _ = crit(outputs, targets)
        total.backward()
    assert recorder.calls == []
    # The recorder does see a sync when there is one (the test can fail).
    with _HostSyncRecorder() as recorder:
        bool(total > 0)
    assert recorder.calls == ["__bool__"]


# ------------------------------------------------------------------ CCC over the global batch (gloo)

def _two_ranks(worker, *args):
    from _gloo import in_two_ranks, results_of

    return results_of(in_two_ranks(worker, *args))


def _global_ccc_worker(rank, preds, targets):
    pred = preds[rank].clone().requires_grad_(True)
    loss = va_loss(pred, targets[rank], "ccc+mse", global_batch=True)
    loss.backward()
    return loss.item(), pred.grad.clone()


def test_global_batch_ccc_under_two_processes_equals_one_process_on_the_whole_batch():
    g = torch.Generator().manual_seed(3)
    pred = torch.tanh(torch.randn(11, 2, generator=g))
    target = torch.rand(11, 2, generator=g) * 2 - 1
    target[[1, 7], 0] = float("nan")
    target[9, 1] = -5.0
    sizes = [7, 4]  # uneven shards, as a last batch gives
    preds, targets = list(pred.split(sizes)), list(target.split(sizes))
    out = _two_ranks(_global_ccc_worker, preds, targets)
    whole = pred.clone().requires_grad_(True)
    expected = va_loss(whole, target, "ccc+mse")
    expected.backward()
    for rank in range(2):
        value, grad = out[rank]
        assert value == pytest.approx(expected.item(), rel=1e-5)
        # Each rank's gradient is world_size x its share; DDP's averaging divides it back.
        torch.testing.assert_close(grad / 2, whole.grad.split(sizes)[rank], rtol=1e-4, atol=1e-6)
    # Per-rank CCC (the default) differs: the test can tell the two apart.
    assert va_loss(preds[0], targets[0], "ccc+mse").item() != pytest.approx(expected.item(), rel=1e-3)


def _uneven_multitask_batch():
    """11 frames split 7 / 4 over two ranks with very different label counts: rank 1 holds no AU
    label and one expression label."""
    outputs, targets = _mtl_batch(11)
    targets["expr"][:7] = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    targets["expr"][7:] = torch.tensor([-1, 7, -1, -1])
    targets["au"][7:] = -1.0
    targets["au"][2, :5] = -1.0
    targets["va"][[1, 8], 0] = float("nan")
    return outputs, targets


def _global_multitask_criterion():
    crit = MultiTaskLoss("expr,au,va", LossConfig(expr="weighted_ce", va="ccc+mse", weighting="uncertainty",
                                                  global_batch=True, va_global_batch=True),
                         class_weights=torch.linspace(0.5, 2.0, 8))
    with torch.no_grad():
        for i, t in enumerate(("expr", "au", "va")):
            crit.log_vars[t].fill_(0.3 * (i - 1))
    return crit


def _global_multitask_worker(rank, sizes):
    outputs, targets = _uneven_multitask_batch()
    mine = {k: v.split(sizes)[rank].clone().requires_grad_(True) for k, v in outputs.items()}
    crit = _global_multitask_criterion()
    total, parts = crit(mine, {k: v.split(sizes)[rank] for k, v in targets.items()})
    total.backward()
    return (total.item(), {t: p.item() for t, p in parts.items()}, {k: v.grad.clone() for k, v in mine.items()},
            {t: crit.log_vars[t].grad.item() for t in parts})


def test_masked_means_under_two_processes_are_those_of_the_whole_batch():
    """Expression and AU means weighted by each rank's label count, VA's CCC and the uncertainty
    weights' "task present" all over the global batch: two ranks with uneven labels train as one
    process on the concatenated batch (DDP averages the ranks' gradients)."""
    sizes = [7, 4]
    outputs, targets = _uneven_multitask_batch()
    whole = {k: v.clone().requires_grad_(True) for k, v in outputs.items()}
    crit = _global_multitask_criterion()  # no process group here: the local loss of the whole batch
    total, parts = crit(whole, targets)
    total.backward()
    ranks = _two_ranks(_global_multitask_worker, sizes)
    for rank, (value, rank_parts, grads, log_var_grads) in enumerate(ranks):
        assert value == pytest.approx(total.item(), rel=1e-5)
        assert rank_parts == pytest.approx({t: p.item() for t, p in parts.items()}, rel=1e-5)
        for k in whole:
            torch.testing.assert_close(grads[k] / 2, whole[k].grad.split(sizes)[rank], rtol=1e-4, atol=1e-7)
        # rank 1 has no AU label, yet its AU weight moves as the global batch's does
        assert log_var_grads == pytest.approx({t: crit.log_vars[t].grad.item() for t in parts}, rel=1e-5)
    assert ranks[1][3]["au"] != 0.0
    # A mean of the ranks' own means (what DDP did before) is another loss: the test can tell.
    local = MultiTaskLoss("expr", LossConfig(expr="weighted_ce"), class_weights=torch.linspace(0.5, 2.0, 8))
    per_rank = [local({"expr": outputs["expr"].split(sizes)[r]}, {"expr": targets["expr"].split(sizes)[r]})[1]["expr"]
                for r in range(2)]
    assert (per_rank[0] + per_rank[1]).item() / 2 != pytest.approx(parts["expr"].item(), rel=1e-2)


def test_global_batch_without_process_group_is_the_local_loss(va_batch):
    pred, target = va_batch
    assert va_loss(pred, target, "ccc", global_batch=True).item() == pytest.approx(va_loss(pred, target, "ccc").item(),
                                                                                    rel=1e-5)
