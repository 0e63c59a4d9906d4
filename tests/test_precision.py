"""affectmodel.training.precision: bf16 only where native, fp16 scaler edge cases (on CPU tensors)."""
import types

import pytest
import torch

from affectmodel.training import precision


@pytest.fixture
def gpu(monkeypatch):
    """Pretend device properties: set ``gpu.major`` to the compute capability's major number."""
    fake = types.SimpleNamespace(major=7, asked=[])

    def props(device):
        fake.asked.append(device)
        return types.SimpleNamespace(major=fake.major, minor=0)

    monkeypatch.setattr(torch.cuda, "get_device_properties", props)
    monkeypatch.setattr(torch.version, "hip", None)
    # Emulated bf16 counts as "supported" for torch.cuda.is_bf16_supported(): it must not decide.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    return fake


@pytest.mark.parametrize("major,expected", [(6, torch.float16), (7, torch.float16), (8, torch.bfloat16),
                                            (9, torch.bfloat16)])
def test_bf16_only_on_gpus_that_compute_it_natively(gpu, major, expected):
    gpu.major = major
    device = torch.device("cuda", 1)
    assert precision.amp_dtype_for(device, True) == expected
    assert gpu.asked == [device]  # the run's own GPU, not whichever is current
    # A scaler only for fp16 (a CPU scaler here: torch disables a CUDA one without a GPU).
    assert precision.make_grad_scaler(torch.device("cpu"), expected).is_enabled() == (expected == torch.float16)


def test_no_autocast_on_cpu_or_when_disabled(gpu):
    gpu.major = 9
    assert precision.amp_dtype_for(torch.device("cpu"), True) is None
    assert precision.amp_dtype_for(torch.device("cuda", 0), False) is None
    assert not precision.make_grad_scaler(torch.device("cpu"), None).is_enabled()


def test_rocm_has_native_bf16(gpu, monkeypatch):
    monkeypatch.setattr(torch.version, "hip", "6.0")
    assert precision.amp_dtype_for(torch.device("cuda", 0), True) == torch.bfloat16


def _scaler(**kwargs):
    return torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, **kwargs)


def test_enabled_scaler_resumes_from_an_empty_state_without_raising():
    empty = torch.amp.GradScaler("cpu", enabled=False).state_dict()
    assert empty == {}
    scaler = _scaler()
    with pytest.raises(RuntimeError):  # what torch does on its own
        scaler.load_state_dict(empty)
    scaler = _scaler()
    assert precision.restore_grad_scaler(scaler, empty) is False
    assert precision.restore_grad_scaler(scaler, None) is False
    assert scaler.get_scale() == 2.0 ** 10
    saved = _scaler(growth_interval=7)
    saved._lazy_init_scale_growth_tracker(torch.device("cpu"))
    saved._scale.fill_(64.0)
    assert precision.restore_grad_scaler(scaler, saved.state_dict()) is True
    assert scaler.get_scale() == 64.0 and scaler.get_growth_interval() == 7
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    assert precision.restore_grad_scaler(disabled, saved.state_dict()) is False


def _model_and_optimizer():
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_skipped_fp16_step_is_reported_so_the_scheduler_does_not_step():
    model, optimizer = _model_and_optimizer()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    scaler = _scaler()
    before = [p.detach().clone() for p in model.parameters()]
    # fp16 overflow: the scaled loss's gradients are inf.
    loss = model(torch.full((2, 3), 1e38)).sum() * 1e38
    scaler.scale(loss).backward()
    took = precision.optimizer_step(scaler, optimizer)
    assert took is False
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert scaler.get_scale() == 2.0 ** 9  # backed off
    if took:
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.1

    optimizer.zero_grad()
    scaler.scale(model(torch.ones(2, 3)).sum()).backward()
    took = precision.optimizer_step(scaler, optimizer)
    assert took is True
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # Growth after growth_interval good steps is a step taken, not a skip.
    scaler = _scaler(growth_interval=1)
    optimizer.zero_grad()
    scaler.scale(model(torch.ones(2, 3)).sum()).backward()
    assert precision.optimizer_step(scaler, optimizer) is True and scaler.get_scale() == 2.0 ** 11


def test_without_a_scaler_every_step_is_taken():
    model, optimizer = _model_and_optimizer()
    model(torch.ones(2, 3)).sum().backward()
    before = model.weight.detach().clone()
    assert precision.optimizer_step(None, optimizer) is True
    assert not torch.equal(before, model.weight)
    assert precision.optimizer_step(torch.amp.GradScaler("cpu", enabled=False), optimizer) is True


def test_an_fp16_step_reads_from_the_device_once_the_scalers_own_read():
    """Each host read stalls a CUDA queue: the step's only one is the scaler's inf/NaN check
    (counted on CPU by affectmodel.training.host_syncs; it was 3 with two reads of the scale)."""
    from affectmodel.training.host_syncs import HostSyncCounter

    model, optimizer = _model_and_optimizer()
    scaler = _scaler()
    scaler.scale(model(torch.ones(2, 3)).sum()).backward()
    with HostSyncCounter() as syncs:
        took = precision.optimizer_step(scaler, optimizer)
    assert took is True and syncs.by_op == {"_local_scalar_dense": 1}
    with HostSyncCounter() as syncs:
        assert precision.optimizer_step(None, optimizer) is True
    assert syncs.total == 0
