"""affectmodel/resnet.py: torchvision's ResNet-18, built without importing torchvision."""
import json
import subprocess
import sys
from pathlib import Path

import torch
import torchvision
from media import small_model_dir

from affectmodel.resnet import resnet

REPO = Path(__file__).resolve().parents[1]


def test_a_seeded_build_is_torchvisions_network_weight_for_weight():
    torch.manual_seed(3)
    theirs = torchvision.models.resnet18(weights=None)
    after_theirs = torch.rand(4)
    torch.manual_seed(3)
    ours = resnet("resnet18")
    after_ours = torch.rand(4)
    assert torch.equal(after_theirs, after_ours)  # the same random numbers drawn: what follows is the same too
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b)  # same keys in the same order: checkpoints and ImageNet weights load as before
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [(n, type(m).__name__) for n, m in theirs.named_modules()] == [
        (n, type(m).__name__) for n, m in ours.named_modules()]
    assert repr(theirs) == repr(ours)


def test_outputs_and_gradients_equal_torchvisions():
    theirs = torchvision.models.resnet18(weights=None)
    ours = resnet("resnet18")
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for train in (True, False):
        theirs.train(train), ours.train(train)
        y_theirs, y_ours = theirs(x), ours(x)
        assert torch.equal(y_theirs, y_ours)
    y_theirs.square().sum().backward()
    y_ours.square().sum().backward()
    grads = [(p.grad, q.grad) for p, q in zip(theirs.parameters(), ours.parameters(), strict=True)]
    assert all(a is not None and b is not None and torch.equal(a, b) for a, b in grads)


def test_a_meta_build_has_the_same_shapes_and_draws_no_random_numbers():
    state = torch.random.get_rng_state()
    with torch.device("meta"):
        meta = resnet("resnet18")
    assert torch.equal(torch.random.get_rng_state(), state)
    real = resnet("resnet18")
    assert {k: v.shape for k, v in meta.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
    assert all(t.is_meta for t in meta.state_dict().values())


def test_predict_imports_neither_torchvision_nor_dynamo(tmp_path):
    """``predict`` (like the demo and a server: load a model folder, detect, predict) never imports
    torchvision, whose package imports torch._dynamo: about 1.3 s of every start. Read from the
    process's own ``-X importtime`` list."""
    folder = small_model_dir(tmp_path, input_size=64)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "affectmodel", "predict",
                           str(REPO / "demo" / "examples" / "face_crop.jpg"), "--model", str(folder), "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["faces"], done.stdout  # a face found and predicted
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert {"torch", "affectmodel.model", "affectmodel.resnet"} <= imported  # the list is read right
    assert not {"torchvision", "torch._dynamo"} & imported
