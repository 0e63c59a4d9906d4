"""The score command: challenge prediction files against per-video annotation folders."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import f1_score

from affectmodel.cli import main
from affectmodel.data.annotations import AnnotationError
from affectmodel.scoring import (
    MissingPredictionsError,
    format_predictions,
    image_name,
    read_predictions,
    score_files,
    write_predictions,
)
from affectmodel.tasks import ABAW8, AU_NAMES

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"EXPR": ",".join(ABAW8.labels), "AU": ",".join(AU_NAMES), "VA": "valence,arousal"}


def run_score(*args):
    """The real command line, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "affectmodel", "score", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def score_cli(capsys):
    """The same command through ``affectmodel.cli.main`` in this process (no interpreter start-up)."""
    def run(*args):
        rc = main(["score", *map(str, args)])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)
    return run


def write_annotations(folder: Path, task: str, videos: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for video, values in videos.items():
        lines = [HEADERS[task]]
        for v in values:
            lines.append(",".join(str(x) for x in np.atleast_1d(v)))
        (folder / f"{video}.txt").write_text("\n".join(lines) + "\n")
    return folder


def ccc_np(x, y):
    return 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


@pytest.fixture
def rng():
    return np.random.default_rng(1)


# ------------------------------------------------------------------ end to end through the CLI

def test_score_expr_end_to_end(tmp_path, rng):
    truth = {"vidA": rng.integers(-1, 8, 40), "vidB_left": rng.integers(-1, 7, 25)}  # class 7 absent in B
    ann = write_annotations(tmp_path / "ann", "EXPR", truth)
    preds = {image_name(v, i + 1): int(rng.integers(0, 8)) for v, t in truth.items() for i in range(len(t))}
    pred_file = write_predictions(tmp_path / "pred.csv", "EXPR", preds)
    res = run_score("--task", "EXPR", "--predictions", pred_file, "--annotations", ann)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"P_EXPR", "per_class_f1", "n", "ignored_predictions"}
    y_true = np.concatenate([truth["vidA"], truth["vidB_left"]])
    # predictions for frames without an expression label are ignored, and counted
    assert out["ignored_predictions"] == int((y_true < 0).sum()) > 0
    assert f"note: {out['ignored_predictions']} prediction row(s) ignored" in res.stderr
    y_pred = np.array(list(preds.values()))
    keep = y_true >= 0
    expected = f1_score(y_true[keep], y_pred[keep], average="macro", labels=list(range(8)), zero_division=0)
    assert out["n"] == keep.sum()
    assert out["P_EXPR"] == pytest.approx(expected)
    assert list(out["per_class_f1"]) == list(ABAW8.labels)
    per = f1_score(y_true[keep], y_pred[keep], average=None, labels=list(range(8)), zero_division=0)
    np.testing.assert_allclose(list(out["per_class_f1"].values()), per)


def test_score_au_end_to_end(tmp_path, score_cli, rng):
    truth = rng.integers(0, 2, (60, 12))
    truth[rng.random((60, 12)) < 0.2] = -1
    truth[5] = -1  # a frame without any AU label needs no prediction
    ann = write_annotations(tmp_path / "ann", "AU", {"v1": truth})
    pred = rng.integers(0, 2, (60, 12))
    preds = {image_name("v1", i + 1): pred[i] for i in range(60) if i != 5}
    pred_file = write_predictions(tmp_path / "pred.csv", "AU", preds)
    res = score_cli("--task", "au", "--predictions", pred_file, "--annotations", ann)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"P_AU", "per_au_f1", "n", "ignored_predictions"} and out["n"] == 59
    assert out["ignored_predictions"] == 0 and "ignored" not in res.stderr
    per = [f1_score(truth[truth[:, j] >= 0, j], pred[truth[:, j] >= 0, j], zero_division=0) for j in range(12)]
    np.testing.assert_allclose(list(out["per_au_f1"].values()), per)
    assert list(out["per_au_f1"]) == list(AU_NAMES)
    assert out["P_AU"] == pytest.approx(np.mean(per))


def test_score_va_end_to_end(tmp_path, rng, score_cli):
    truth = rng.uniform(-1, 1, (50, 2)).round(3)
    truth[[3, 17]] = -5
    ann = write_annotations(tmp_path / "ann", "VA", {"clip": truth})
    pred = np.clip(truth + rng.normal(0, 0.3, truth.shape), -1, 1)
    preds = {image_name("clip", i + 1): pred[i] for i in range(50)}
    preds["other_video/00001.jpg"] = np.array([0.0, 0.0])  # frames without annotations are ignored
    pred_file = write_predictions(tmp_path / "pred.csv", "VA", preds)
    res = score_cli("--task", "VA", "--predictions", pred_file, "--annotations", ann)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"P_VA", "ccc_valence", "ccc_arousal", "n", "ignored_predictions"} and out["n"] == 48
    assert out["ignored_predictions"] == 3  # two unlabelled frames and one frame of an unannotated video
    keep = truth[:, 0] != -5
    p = pred.round(6)
    v, a = ccc_np(p[keep, 0], truth[keep, 0]), ccc_np(p[keep, 1], truth[keep, 1])
    assert out["ccc_valence"] == pytest.approx(v, abs=1e-5)
    assert out["ccc_arousal"] == pytest.approx(a, abs=1e-5)
    assert out["P_VA"] == pytest.approx((v + a) / 2, abs=1e-5)


def _write_mtl(path: Path, rows: list[tuple[str, list[float]]]) -> Path:
    header = "image,valence,arousal,expression," + ",".join(AU_NAMES)
    path.write_text(header + "\n" + "\n".join(img + "," + ",".join(_num(v) for v in values)
                                               for img, values in rows) + "\n")
    return path


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4f}"


def test_multi_task_csv_as_ground_truth_and_as_predictions(tmp_path, rng, score_cli):
    n = 30
    va = rng.uniform(-1, 1, (n, 2)).round(3)
    va[2] = -5
    expr = rng.integers(0, 8, n)
    expr[4] = -1
    au = rng.integers(0, 2, (n, 12)).astype(float)
    au[6] = -1
    images = [image_name("vid", i + 1) for i in range(n)]
    truth = _write_mtl(tmp_path / "validation_set_annotations.txt",
                       [(img, [*va[i], expr[i], *au[i]]) for i, img in enumerate(images)])
    p_va, p_expr, p_au = np.clip(va + 0.1, -1, 1), rng.integers(0, 8, n), rng.integers(0, 2, (n, 12))
    pred = _write_mtl(tmp_path / "pred_mtl.csv",
                      [(img, [*p_va[i], p_expr[i], *p_au[i]]) for i, img in enumerate(images)])
    # the same predictions in the challenge's per-task format give the same score
    expr_file = write_predictions(tmp_path / "expr.csv", "EXPR", dict(zip(images, p_expr, strict=True)))
    for predictions in (pred, expr_file):
        res = score_cli("--task", "EXPR", "--predictions", predictions, "--annotations", truth)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        keep = expr >= 0
        assert out["n"] == n - 1 and out["ignored_predictions"] == 1
        assert out["P_EXPR"] == pytest.approx(f1_score(expr[keep], p_expr[keep], average="macro",
                                                        labels=list(range(8)), zero_division=0))
    out = score_files("AU", pred, truth)
    assert out["n"] == n - 1 and out["ignored_predictions"] == 1
    per = [f1_score(np.delete(au[:, j], 6), np.delete(p_au[:, j], 6), zero_division=0) for j in range(12)]
    assert out["P_AU"] == pytest.approx(np.mean(per))
    out = score_files("VA", pred, truth)
    assert out["n"] == n - 1
    # a plain file that is not the multi-task CSV is refused with the reason
    (tmp_path / "other.txt").write_text("Neutral,Anger\n0\n")
    with pytest.raises(AnnotationError, match="multi-task set's CSV"):
        score_files("EXPR", expr_file, tmp_path / "other.txt")


# ------------------------------------------------------------------ errors

def test_missing_frames_name_videos_and_count(tmp_path):
    ann = write_annotations(tmp_path / "ann", "EXPR", {"vidA": np.array([1, 2, -1, 3]), "vidB": np.array([0, 0])})
    preds = {image_name("vidA", 1): 1, image_name("vidA", 3): 0}  # misses vidA frames 2 and 4, all of vidB
    pred_file = write_predictions(tmp_path / "pred.csv", "EXPR", preds)
    res = run_score("--task", "EXPR", "--predictions", pred_file, "--annotations", ann)
    assert res.returncode == 2 and res.stdout == ""
    assert "missing for 4 annotated frame(s) in 2 video(s)" in res.stderr
    assert "vidA (2)" in res.stderr and "vidB (2)" in res.stderr
    assert "Traceback" not in res.stderr
    with pytest.raises(MissingPredictionsError) as info:
        score_files("EXPR", pred_file, ann)
    assert info.value.missing == {"vidA": 2, "vidB": 2}


def test_malformed_prediction_line_names_file_and_line(tmp_path, score_cli):
    ann = write_annotations(tmp_path / "ann", "VA", {"v": np.array([[0.1, 0.2], [0.3, 0.4]])})
    pred_file = tmp_path / "pred.csv"
    pred_file.write_text("image_location,valence,arousal\nv/00001.jpg,0.1,0.2\nv/00002.jpg,0.1\n")
    res = score_cli("--task", "VA", "--predictions", pred_file, "--annotations", ann)
    assert res.returncode == 2
    assert f"{pred_file}:3: expected 3 comma-separated values, found 2" in res.stderr


def test_malformed_annotation_line_names_file_and_line(tmp_path, score_cli):
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "v.txt").write_text("valence,arousal\n0.1,0.2\n0.3,oops\n")
    pred_file = write_predictions(tmp_path / "pred.csv", "VA", {"v/00001.jpg": [0, 0], "v/00002.jpg": [0, 0]})
    res = score_cli("--task", "VA", "--predictions", pred_file, "--annotations", ann)
    assert res.returncode == 2
    assert f"{ann / 'v.txt'}:3: non-numeric value 'oops'" in res.stderr


def test_wrong_prediction_header(tmp_path, score_cli):
    ann = write_annotations(tmp_path / "ann", "AU", {"v": np.zeros((1, 12), int)})
    pred_file = tmp_path / "pred.csv"
    pred_file.write_text("image,valence,arousal\nv/00001.jpg,0,0\n")
    res = score_cli("--task", "AU", "--predictions", pred_file, "--annotations", ann)
    assert res.returncode == 2
    assert f"{pred_file}:1: wrong header for AU predictions" in res.stderr


def test_missing_inputs(tmp_path, score_cli):
    res = score_cli("--task", "VA", "--predictions", tmp_path / "nope.csv", "--annotations", tmp_path)
    assert res.returncode == 2 and "prediction file not found" in res.stderr
    pred_file = write_predictions(tmp_path / "pred.csv", "VA", {"v/00001.jpg": [0, 0]})
    res = score_cli("--task", "VA", "--predictions", pred_file, "--annotations", tmp_path / "empty")
    assert res.returncode == 2 and "annotation folder not found" in res.stderr


@pytest.mark.parametrize("task,body,reason", [
    ("EXPR", "v/00001.jpg,8", "is not a class index 0..7"),
    ("EXPR", "v/00001.jpg,-1", "is not a class index"),
    ("EXPR", "v/00001.jpg,1.5", "is not a class index"),
    ("AU", "v/00001.jpg," + "0," * 11 + "0.7", "AU26 value 0.7 is not 0 or 1"),
    ("VA", "v/00001.jpg,0.1,nan", "arousal value nan is not a number in -1..1"),
    ("VA", "v/00001.jpg,1.5,0", "valence value 1.5 is not a number in -1..1"),
    ("VA", "v/00001.jpg,0.2,-5", "arousal value -5 is not a number in -1..1"),
    ("VA", "v/00001.jpg,-1.0001,0", "valence value -1.0001 is not a number in -1..1"),
    ("VA", "v/00001.jpg,0.1,abc", "non-numeric value 'abc' in column 3"),
    # an empty value is not an empty line (it was called one for EXPR: "empty line (expected 2 ...)")
    ("EXPR", "v/00001.jpg,", "2: empty value in column 2 (expected a number)"),
    ("EXPR", "v/00001.jpg, ", "2: empty value in column 2"),
    ("VA", "v/00001.jpg,0.1,", "2: empty value in column 3"),
    ("AU", "v/00001.jpg," + "0," * 11, "2: empty value in column 13"),
    ("VA", "v/00001.jpg,0,0\n\nv/00002.jpg,0,0", "3: empty line"),
    ("VA", "v/1.jpg,0,0\nv/00001.jpg,0,0", "already predicted on line 2"),
    ("VA", "00001.jpg,0,0", "is not <video>/<frame>.jpg"),
    ("VA", "../v/00001.jpg,0,0", "is not <video>/<frame>.jpg"),
])
def test_read_predictions_rejects_bad_rows(tmp_path, task, body, reason):
    f = tmp_path / "p.csv"
    f.write_text(format_predictions(task, {}) + body + "\n")
    with pytest.raises(AnnotationError) as info:
        read_predictions(f, task)
    assert str(info.value).startswith(f"{f}:") and reason in str(info.value)


def test_score_refuses_valence_and_arousal_outside_the_label_range(tmp_path, score_cli):
    """Out-of-range expression and AU predictions were refused; VA ones were scored (a 1.5 or a
    -5 'not predicted' code pulled the CCC down without a word). The bounds themselves are valid."""
    ann = write_annotations(tmp_path / "ann", "VA", {"v": np.array([[0.1, 0.2], [0.3, 0.4], [-0.5, 0.6]])})
    pred_file = tmp_path / "pred.csv"
    pred_file.write_text("image_location,valence,arousal\nv/00001.jpg,-1,1\nv/00002.jpg,1.0,-1.0\n"
                         "v/00003.jpg,0.5,1.25\n")
    res = score_cli("--task", "VA", "--predictions", pred_file, "--annotations", ann)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == f"error: {pred_file}:4: predicted arousal value 1.25 is not a number in -1..1"
    pred_file.write_text("image_location,valence,arousal\nv/00001.jpg,-1,1\nv/00002.jpg,1.0,-1.0\n"
                         "v/00003.jpg,0.5,0.25\n")
    res = score_cli("--task", "VA", "--predictions", pred_file, "--annotations", ann)
    assert res.returncode == 0 and json.loads(res.stdout)["n"] == 3


def test_predictions_round_trip(tmp_path, rng):
    au = {image_name("v", i): rng.integers(0, 2, 12) for i in range(1, 6)}
    va = {image_name("v", i): rng.uniform(-1, 1, 2) for i in range(1, 6)}
    expr_scores = {image_name("v", i): rng.random(8) for i in range(1, 6)}
    for task, preds in (("AU", au), ("VA", va), ("EXPR", expr_scores)):
        back = read_predictions(write_predictions(tmp_path / f"{task}.csv", task, preds), task)
        assert list(back) == list(preds)
        for img, value in preds.items():
            if task == "EXPR":
                assert back[img].shape == () and int(back[img]) == int(np.argmax(value))
            else:
                np.testing.assert_allclose(back[img], value, atol=1e-6)
