import shutil

import numpy as np
import pytest
import torch
from media import astronaut, faces_image, noise_image, small_model_dir

from affectmodel import AffectModel, ModelConfig, load_model
from affectmodel.inference.align import align_face
from affectmodel.inference.faces import create_detector
from affectmodel.inference.predictor import (
    ModelTooLargeError,
    NonFiniteOutputError,
    Predictor,
    fit_batch_size,
    flatten_record,
    top_expression,
)
from affectmodel.model import forward_memory_bytes
from affectmodel.tasks import ABAW8, AU_NAMES, get_label_space

THRESHOLDS = [0.0] * 6 + [1.0] * 6  # first six AUs always on, last six never: checks stored thresholds are used


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return small_model_dir(tmp_path_factory.mktemp("m"), input_size=64, au_thresholds=THRESHOLDS)


@pytest.fixture(scope="module")
def detector():
    return create_detector("retinaface")


@pytest.fixture(scope="module")
def predictor(model_dir, detector):
    return Predictor(model_dir, detector=detector)


def _check_multitask_record(rec):
    assert set(rec) == {"box", "score", "expression", "aus", "aus_active", "valence", "arousal"}
    assert list(rec["expression"]) == list(ABAW8.labels)
    assert sum(rec["expression"].values()) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= p <= 1.0 for p in rec["expression"].values())
    assert list(rec["aus"]) == list(AU_NAMES) and list(rec["aus_active"]) == list(AU_NAMES)
    assert all(0.0 <= p <= 1.0 for p in rec["aus"].values())
    assert [rec["aus_active"][au] for au in AU_NAMES] == [True] * 6 + [False] * 6
    assert -1.0 <= rec["valence"] <= 1.0 and -1.0 <= rec["arousal"] <= 1.0
    x1, y1, x2, y2 = rec["box"]
    assert x2 > x1 and y2 > y1 and 0 < rec["score"] <= 1


def test_multitask_schema_on_one_face(predictor):
    records = predictor.predict_image(astronaut())
    assert len(records) == 1
    _check_multitask_record(records[0])
    assert all(isinstance(v, float) for v in records[0]["expression"].values())  # plain data, JSON-ready
    assert isinstance(records[0]["aus_active"]["AU1"], bool)


def test_several_faces_left_to_right_in_one_forward_pass(predictor):
    image, centres = faces_image(3)
    calls = []
    handle = predictor.model.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    try:
        records = predictor.predict_image(image)
    finally:
        handle.remove()
    assert calls == [6]  # one batched forward for all faces and their mirror images
    assert len(records) == 3
    xs = [(r["box"][0] + r["box"][2]) / 2 for r in records]
    assert xs == sorted(xs) and np.allclose(xs, centres, atol=12)
    for rec in records:
        _check_multitask_record(rec)


def test_no_face_is_an_empty_result(predictor):
    assert predictor.predict_image(noise_image()) == []


def test_batch_prediction_equals_per_face_prediction(predictor):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    crops.append(align_face(astronaut(), predictor.detect(astronaut())[0].landmarks, 64))
    batched = predictor.forward(crops)
    for i, crop in enumerate(crops):
        single = predictor.forward([crop])
        for key in ("expr", "au", "va"):
            assert np.allclose(batched[key][i], single[key][0], atol=1e-5)
    # chunking by batch_size gives the same numbers too
    small_batches = Predictor(predictor.model, detector=None, batch_size=2).forward(crops)
    for key in batched:
        assert np.allclose(batched[key], small_batches[key], atol=1e-5)


def test_forward_matches_the_model_in_eval_mode(predictor):
    crop = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mean = torch.tensor(predictor.model.config.mean)[:, None, None]
    std = torch.tensor(predictor.model.config.std)[:, None, None]
    x = (torch.from_numpy(crop).float().permute(2, 0, 1)[None] / 255.0 - mean) / std
    with torch.no_grad():
        out, mirrored = predictor.model.eval()(x), predictor.model(x.flip(-1))
    plain = Predictor(predictor.model, detector=None, mirror=False).forward([crop])
    assert np.allclose(plain["expr"], torch.softmax(out["expr"], 1).numpy(), atol=1e-5)
    assert np.allclose(plain["au"], torch.sigmoid(out["au"]).numpy(), atol=1e-5)
    assert np.allclose(plain["va"], out["va"].numpy(), atol=1e-5)
    # by default: the mean of the face's and its mirror image's readings
    got = predictor.forward([crop])
    both = {k: [out[k], mirrored[k]] for k in out}
    assert np.allclose(got["expr"], np.mean([torch.softmax(v, 1).numpy() for v in both["expr"]], 0), atol=1e-5)
    assert np.allclose(got["au"], np.mean([torch.sigmoid(v).numpy() for v in both["au"]], 0), atol=1e-5)
    assert np.allclose(got["va"], np.mean([v.numpy() for v in both["va"]], 0), atol=1e-5)
    assert not predictor.model.training


def test_a_face_and_its_mirror_image_get_the_same_answer(predictor):
    rng = np.random.default_rng(5)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    crops.append(align_face(astronaut(), predictor.detect(astronaut())[0].landmarks, 64))
    flipped = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
    a, b = predictor.forward(crops), predictor.forward(flipped)
    for key in a:
        assert np.allclose(a[key], b[key], atol=1e-5), key
    # the model alone is not symmetric: without mirroring the two readings differ
    plain = Predictor(predictor.model, detector=None, mirror=False)
    assert not np.allclose(plain.forward(crops)["expr"], plain.forward(flipped)["expr"], atol=1e-3)
    # whole images: the astronaut and her mirror image
    image = astronaut()
    left, right = predictor.predict_image(image)[0], predictor.predict_image(np.ascontiguousarray(image[:, ::-1]))[0]
    assert top_expression(left)[0] == top_expression(right)[0]
    assert left["valence"] == pytest.approx(right["valence"], abs=0.02)


def test_crops_of_any_size_are_resized(predictor):
    records = predictor.predict_crops([np.zeros((30, 50, 3), np.uint8), np.zeros((200, 200), np.uint8)])
    assert len(records) == 2 and "box" not in records[0]
    assert records[0]["expression"] == pytest.approx(records[1]["expression"], abs=1e-5)  # both black


@pytest.mark.parametrize("tasks,fields", [
    (["expr"], {"expression"}),
    (["au"], {"aus", "aus_active"}),
    (["va"], {"valence", "arousal"}),
    (["expr", "va"], {"expression", "valence", "arousal"}),
])
def test_uni_task_models_give_only_their_fields(detector, tasks, fields):
    predictor = Predictor(AffectModel(ModelConfig(tasks=tasks, input_size=32)), detector=detector)
    records = predictor.predict_image(astronaut())
    assert len(records) == 1
    assert set(records[0]) == {"box", "score"} | fields
    assert predictor.tasks == tuple(tasks)


def test_expression_labels_follow_the_models_label_space(tmp_path):
    model = AffectModel(ModelConfig(tasks=["expr"], expression_space="affectnet8", input_size=32))
    predictor = Predictor(model, detector=None)
    rec = predictor.predict_crops([np.zeros((32, 32, 3), np.uint8)])[0]
    assert list(rec["expression"]) == list(get_label_space("affectnet8").labels)


def test_sources_model_folder_run_folder_and_object(tmp_path, model_dir):
    run = tmp_path / "run"
    shutil.copytree(model_dir, run / "model")
    crop = [np.full((64, 64, 3), 90, np.uint8)]
    a = Predictor(model_dir, detector=None).predict_crops(crop)
    b = Predictor(run, detector=None).predict_crops(crop)
    c = Predictor(load_model(model_dir), detector=None).predict_crops(crop)
    for other in (b, c):
        assert other[0]["expression"] == pytest.approx(a[0]["expression"], abs=1e-6)
        assert other[0]["aus"] == pytest.approx(a[0]["aus"], abs=1e-6)
        assert (other[0]["valence"], other[0]["arousal"]) == pytest.approx((a[0]["valence"], a[0]["arousal"]), abs=1e-6)
    with pytest.raises((FileNotFoundError, ValueError)):
        Predictor(tmp_path / "missing", detector=None)


def test_without_detector_only_crops_work(model_dir):
    predictor = Predictor(model_dir, detector=None)
    with pytest.raises(ValueError, match="no face detector"):
        predictor.predict_image(astronaut())
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(model_dir, detector=None, batch_size=0)


def test_flat_rows_and_top_expression(predictor):
    rec = predictor.predict_image(astronaut())[0]
    row = flatten_record({"frame": 3, "track_id": 1, **rec})
    assert row["frame"] == 3 and row["track_id"] == 1
    assert [row[k] for k in ("x1", "y1", "x2", "y2")] == rec["box"]
    top = top_expression(rec)
    assert top is not None
    label, prob = top
    assert row["expression"] == label and prob == max(rec["expression"].values())
    assert row[f"expr_{label}"] == pytest.approx(prob, abs=1e-6)
    assert row["AU1_active"] == 1 and row["AU26_active"] == 0
    assert row["AU12"] == pytest.approx(rec["aus"]["AU12"], abs=1e-6)
    assert top_expression({"aus": {}}) is None


def test_non_finite_outputs_are_refused_not_reported(model_dir):
    model = load_model(model_dir)
    with torch.no_grad():
        model.heads["expr"].bias[2] = float("nan")  # e.g. weights corrupted after loading
    predictor = Predictor(model, detector=None)
    with pytest.raises(NonFiniteOutputError, match=r"NaN or inf expr outputs for 1 of 1 face"):
        predictor.predict_crops([astronaut()])


def test_batch_size_fits_the_available_memory():
    per_face = forward_memory_bytes(112)
    assert fit_batch_size(112, 64, available=2 * 10 * per_face) == 10  # half the memory for one pass
    assert fit_batch_size(112, 8, available=2 * 10 * per_face) == 8
    with pytest.raises(ModelTooLargeError, match="input_size 1024 needs about"):
        fit_batch_size(1024, 64, available=forward_memory_bytes(1024))  # refused before allocating
