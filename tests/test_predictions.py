"""Validation predictions files: round trip, pairing keys, refusal of malformed files."""
import numpy as np
import pytest

from affectmodel.predictions import PREDICTIONS_FILE, Predictions, PredictionsError, load_predictions, save_predictions


def _predictions(n: int = 7) -> Predictions:
    rng = np.random.default_rng(0)
    expr = rng.random((n, 8)).astype(np.float32)
    return Predictions(
        video=np.array(["a"] * 3 + ["b_left"] * (n - 3)), frame=np.arange(1, n + 1),
        outputs={"expr": expr / expr.sum(1, keepdims=True), "va": rng.uniform(-1, 1, (n, 2))},
        targets={"expr": rng.integers(-1, 8, n), "va": rng.uniform(-1, 1, (n, 2))})


def test_round_trip_keeps_every_array(tmp_path):
    p = _predictions()
    save_predictions(tmp_path / PREDICTIONS_FILE, p)
    q = load_predictions(tmp_path)  # a run folder is enough
    assert q.tasks == ("expr", "va")
    assert list(q.video) == list(p.video) and list(q.frame) == list(p.frame)
    for task in p.tasks:
        np.testing.assert_array_equal(q.outputs[task], p.outputs[task])
        np.testing.assert_array_equal(q.targets[task], p.targets[task])
    assert q.keys()[3] == "b_left/4"


def test_select_keeps_rows_aligned():
    p = _predictions()
    q = p.select(p.video == "a")
    assert len(q) == 3 and q.outputs["va"].shape == (3, 2)
    np.testing.assert_array_equal(q.targets["expr"], p.targets["expr"][:3])


def test_shape_mismatch_is_refused():
    with pytest.raises(PredictionsError, match="expected"):
        Predictions(np.array(["a", "a"]), np.array([1, 2]), {"au": np.zeros((2, 11))}, {"au": np.zeros((2, 11))})


def test_unreadable_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / PREDICTIONS_FILE
    bad.write_bytes(b"not a zip")
    with pytest.raises(PredictionsError, match=str(bad)) as info:
        load_predictions(bad)
    # numpy's own reason for such bytes ("pickled data ... load it unsafely") must not reach the user
    assert str(info.value) == f"{bad}: not a readable predictions file (not an .npz archive)"
    bad.write_bytes(b"")
    with pytest.raises(PredictionsError, match=f"{bad}: empty file"):
        load_predictions(bad)
    with pytest.raises(PredictionsError, match="no predictions file"):
        load_predictions(tmp_path / "nowhere")


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / PREDICTIONS_FILE
    np.savez(path, video=np.array([{"x": 1}], dtype=object), frame=np.array([1]))
    with pytest.raises(PredictionsError):
        load_predictions(path)
