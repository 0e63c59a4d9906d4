"""The dynamic synthetic benchmark: episodes, mood, bursts, layout, determinism, readers."""
import hashlib
import json

import numpy as np
import pytest

from affectmodel.cli import main as cli_main
from affectmodel.data.affwild2 import load_affwild2
from affectmodel.data.synthetic import SynthConfig, sample_sequence
from affectmodel.data.synthetic_dynamics import (
    DYNAMICS_FOLDER,
    DynamicsConfig,
    ambiguous_frames,
    generate_dynamic_benchmark,
    read_notes,
    sample_dynamic_sequence,
)
from affectmodel.tasks import ABAW8, AU_NAMES

NEUTRAL = ABAW8.labels.index("Neutral")


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def sequences():
    cfg = SynthConfig(size=32)
    return [sample_dynamic_sequence(120, np.random.default_rng(s), cfg) for s in range(12)]


def test_episodes_ramp_up_and_down_under_one_label(sequences):
    onset_share, apex_share = [], []
    for seq in sequences:
        phase, expr = seq.notes.phase, seq.expr
        assert set(np.unique(expr[phase == 0])) <= {NEUTRAL}  # between episodes: neutral
        assert (expr[phase > 0] != NEUTRAL).all()
        # the episode's AU labels cover the onset although its AUs have barely moved there
        on, apex = phase == 1, phase == 2
        if on.any() and apex.any():
            onset_share.append(seq.au_intensity[on].max(axis=1).mean())
            apex_share.append(seq.au_intensity[apex].max(axis=1).mean())
            first = np.flatnonzero(on)[0]  # the first onset frame already carries the episode's labels
            assert expr[first] == expr[first + 1] and seq.au[first].sum() >= 1
    assert np.mean(onset_share) < 0.7 * np.mean(apex_share)


def test_mood_drifts_smoothly_and_stays_in_range(sequences):
    va = np.concatenate([s.va for s in sequences])
    assert va.min() >= -1 and va.max() <= 1
    assert va.std(axis=0).min() > 0.2 and (np.abs(va) > 0.99).mean() < 0.1
    for seq in sequences:  # frame-to-frame steps are small next to the spread
        steps = np.abs(np.diff(seq.va, axis=0))
        assert np.median(steps) < 0.1 * seq.va.std() + 0.02


def test_bursts_spoil_frames_but_not_labels(sequences):
    notes = [s.notes for s in sequences]
    for key in ("occluded", "blurred", "turned"):
        assert sum(getattr(n, key).sum() for n in notes) > 0, key
    for seq in sequences:
        n = seq.notes
        assert all(seq.occluders[t] is not None for t in np.flatnonzero(n.occluded))
        assert (np.abs(seq.pose[n.turned, 0]) > 0.5).all()
        assert (seq.light[n.blurred, 1] >= 0.8 * DynamicsConfig().blur_radius * 32 / 112).all()
    share = np.mean([ambiguous_frames(n).mean() for n in notes])
    assert 0.2 < share < 0.8


def test_base_sequence_comes_from_the_plain_sampler():
    cfg = SynthConfig(size=32)
    plain = sample_sequence(40, np.random.default_rng(3), cfg)
    dyn = sample_dynamic_sequence(40, np.random.default_rng(3), cfg)
    assert dyn.identity == plain.identity and dyn.jpeg_quality == plain.jpeg_quality


def test_config_validation():
    with pytest.raises(ValueError, match="onset_frames"):
        DynamicsConfig(onset_frames=(0, 3))
    with pytest.raises(ValueError, match="blur_every"):
        DynamicsConfig(blur_every=0)


def test_benchmark_layout_readers_notes_and_determinism(tmp_path):
    cfg = SynthConfig(videos=4, frames=30, size=32, seed=2, validation_fraction=0.5)
    a, b = tmp_path / "a", tmp_path / "b"
    summary = generate_dynamic_benchmark(a, config=cfg, progress=False)
    generate_dynamic_benchmark(b, config=cfg, progress=False)
    assert digest(a) == digest(b)
    marker = json.loads((a / "SYNTHETIC.json").read_text())
    assert marker["dynamics"]["version"] == 1 and marker["dataset"] == "synthetic-affect"
    names = summary["videos"]["train"] + summary["videos"]["validation"]
    assert sorted(p.stem for p in (a / DYNAMICS_FOLDER).glob("*.csv")) == sorted(names)
    train = load_affwild2(a, "train")
    assert train.synthetic and len(train) > 0
    notes = read_notes(a, names[0])
    assert notes is not None and len(notes.phase) == 30
    assert read_notes(a, "no-such-video") is None
    # the readers' labels are the sequence's labels: an AU label file line per frame
    au_file = next((a / "annotations" / "AU_Detection_Challenge").rglob("*.txt"))
    assert au_file.read_text().splitlines()[0] == ",".join(AU_NAMES)
    # regenerating over it is allowed with --overwrite and gives the same files
    generate_dynamic_benchmark(a, config=cfg, progress=False, overwrite=True)
    assert digest(a) == digest(b)


def test_synth_dynamics_command(tmp_path, capsys):
    out = tmp_path / "dyn"
    assert cli_main(["synth", "--dynamics", "--out", str(out), "--videos", "2", "--frames", "6", "--size", "24",
                     "--quiet"]) == 0
    assert (out / DYNAMICS_FOLDER).is_dir() and "dynamics" in json.loads((out / "SYNTHETIC.json").read_text())
    capsys.readouterr()
    assert cli_main(["synth", "--dynamics", "--layout", "folders", "--out", str(tmp_path / "f")]) != 0
    assert "--dynamics" in capsys.readouterr().err
