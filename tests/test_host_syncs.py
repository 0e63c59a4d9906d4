"""affectmodel.training.host_syncs: the operations that would make a CUDA host wait, counted on CPU."""
import torch

from affectmodel.training.host_syncs import HostSyncCounter


def test_scalar_reads_and_data_dependent_shapes_are_counted_and_elementwise_work_is_not():
    x = torch.randn(16)
    with HostSyncCounter() as syncs:
        y = (x * 2 + 1).relu().sum(0)   # none
        _ = torch.where(x > 0, x, 0.0)  # none: a mask multiplied in, not used to index
        float(y)                        # a scalar read
        _ = x[x > 0]                    # a boolean mask: its shape depends on the data
        _ = torch.nonzero(x)
    assert syncs.by_op == {"_local_scalar_dense": 1, "index (boolean mask)": 1, "nonzero": 1}
    assert syncs.total == 3


def test_a_paused_block_is_not_counted():
    x = torch.randn(4)
    with HostSyncCounter() as syncs:
        with syncs.paused():
            float(x.sum())
        float(x.sum())
    assert syncs.total == 1
