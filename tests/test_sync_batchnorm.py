"""affectmodel.training.sync_batchnorm: BatchNorm over the global batch with one all_reduce per pass
and no host sync, checked on two gloo ranks against one BatchNorm over the concatenated batch."""
import pytest
import torch
from _gloo import in_two_ranks, results_of
from torch import nn

from affectmodel.training.host_syncs import HostSyncCounter
from affectmodel.training.sync_batchnorm import SyncBatchNormNoHostSync, convert_sync_batchnorm


def _batch():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(8, 4, 5, 5, generator=g) * 3 + 2
    target = torch.randn(8, 4, 5, 5, generator=g)
    return x, target


def _layer():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 1.5, -2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    return bn


def _rank_step(rank, sizes):
    """One forward and backward of a converted layer on this rank's share; its results and the
    host syncs the pass made (0 expected; a boolean mask afterwards shows the counter sees one)."""
    x, target = _batch()
    mine = x.split(sizes)[rank].clone().requires_grad_(True)
    layer = convert_sync_batchnorm(_layer())
    with HostSyncCounter() as syncs:
        y = layer(mine)
        loss = (y * target.split(sizes)[rank]).sum() / max(1, sizes[rank])  # this rank's mean
        loss.backward()
    silent = syncs.total
    with HostSyncCounter() as syncs:
        _ = y[y > 0]
    return (type(layer).__name__, y.detach(), mine.grad, layer.weight.grad, layer.bias.grad, layer.running_mean,
            layer.running_var, silent, syncs.total)


def test_two_ranks_normalise_and_train_as_one_batchnorm_on_the_whole_batch():
    x, target = _batch()
    whole = x.clone().requires_grad_(True)
    bn = _layer()
    y = bn(whole)
    ((y * target).sum() / 8).backward()  # the mean of the two ranks' means
    ranks = results_of(in_two_ranks(_rank_step, [4, 4]))
    grads = []
    for rank, (kind, out, x_grad, w_grad, b_grad, running_mean, running_var, silent, seen) in enumerate(ranks):
        assert kind == "SyncBatchNormNoHostSync"
        torch.testing.assert_close(out, y.detach().split(4)[rank], rtol=1e-4, atol=1e-5)
        # the input's gradient carries every rank's loss: twice the mean's; DDP's averaging halves
        # what reaches the parameters upstream
        torch.testing.assert_close(x_grad / 2, whole.grad.split(4)[rank], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(running_mean, bn.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(running_var, bn.running_var, rtol=1e-5, atol=1e-6)
        assert silent == 0 and seen == 1
        grads.append((w_grad, b_grad))
    # weight and bias keep local gradients, averaged by DDP like any parameter's
    torch.testing.assert_close((grads[0][0] + grads[1][0]) / 2, bn.weight.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close((grads[0][1] + grads[1][1]) / 2, bn.bias.grad, rtol=1e-4, atol=1e-6)


def test_an_empty_rank_adds_nothing_and_gets_no_nan():
    """What torch filters with a boolean mask (a host sync per layer) is a zero contribution here."""
    x, _ = _batch()
    expected = _layer()(x).detach()
    ranks = results_of(in_two_ranks(_rank_step, [8, 0]))
    torch.testing.assert_close(ranks[0][1], expected, rtol=1e-4, atol=1e-5)
    assert ranks[1][1].shape == (0, 4, 5, 5)
    for result in ranks:
        assert torch.isfinite(result[5]).all() and torch.isfinite(result[6]).all()


def test_without_a_process_group_or_in_evaluation_it_is_plain_batchnorm():
    x, _ = _batch()
    plain, synced = _layer(), convert_sync_batchnorm(_layer())
    assert isinstance(synced, SyncBatchNormNoHostSync)
    torch.testing.assert_close(synced(x), plain(x))
    plain.eval()
    synced.eval()
    torch.testing.assert_close(synced(x), plain(x))


def test_conversion_keeps_a_networks_weights_and_layers():
    from affectmodel.model import AffectModel, ModelConfig

    model = AffectModel(ModelConfig(tasks=["expr"], input_size=32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_sync_batchnorm(model)
    kinds = [type(m) for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert kinds == [SyncBatchNormNoHostSync] * 20  # ResNet-18's BatchNorm layers
    after = converted.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("momentum", [None, 0.3])
def test_running_statistics_follow_torchs_rule(momentum):
    def step(rank):
        layer = convert_sync_batchnorm(nn.BatchNorm2d(4, momentum=momentum))
        for k in range(3):
            layer(_batch()[0].split(4)[rank] + k)
        return layer.running_mean, layer.running_var

    bn = nn.BatchNorm2d(4, momentum=momentum)
    for k in range(3):
        bn(_batch()[0] + k)
    for running_mean, running_var in results_of(in_two_ranks(step)):
        torch.testing.assert_close(running_mean, bn.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(running_var, bn.running_var, rtol=1e-5, atol=1e-6)
