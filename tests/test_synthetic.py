"""The synthetic affect benchmark: faces, sequences, layout, determinism, and reading it back."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from affectmodel.cli import main as cli_main
from affectmodel.data.affwild2 import detect_layout, load_affwild2
from affectmodel.data.annotations import read_mtl_csv, read_task_file
from affectmodel.data.synthetic import (
    CIRCUMPLEX,
    EXPRESSION_PROTOTYPES,
    SynthConfig,
    contact_sheet,
    expression_deck,
    generate_benchmark,
    mixture_circumplex,
    prototype_intensities,
    read_marker,
    sample_sequence,
)
from affectmodel.data.synthetic_faces import FaceParams, render_face, sample_identity
from affectmodel.tasks import ABAW8, AU_NAMES

TINY = {"videos": 4, "frames": 8, "size": 32}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "bench"
    cfg = SynthConfig(seed=3, validation_fraction=0.5, missing_image_fraction=0.1, **TINY)
    summary = generate_benchmark(root, config=cfg, progress=False)
    return root, summary


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


# ------------------------------------------------------------------ faces

def test_render_face_size_mode_and_au_effect():
    neutral = render_face(np.zeros(12), FaceParams(), size=48)
    assert neutral.size == (48, 48) and neutral.mode == "RGB"
    smile, _ = prototype_intensities("Happiness")
    happy = render_face(smile, FaceParams(), size=48)
    diff = np.abs(np.asarray(happy, dtype=int) - np.asarray(neutral, dtype=int))
    # the lower face changes (mouth, cheeks), the background corner does not
    assert diff[28:44, 12:36].mean() > 5 and diff[:4, :4].max() == 0
    assert render_face(np.zeros(12), size=32, background=None).mode == "RGBA"  # for compositing
    with pytest.raises(ValueError, match="12 AU"):
        render_face(np.zeros(5))
    with pytest.raises(ValueError, match="hidden AU"):
        render_face(np.zeros(12), hidden_au={"AU99": 1.0})


def test_every_expression_looks_different_from_neutral():
    ident = FaceParams()
    base = np.asarray(render_face(np.zeros(12), ident, 48), dtype=int)
    for name in ABAW8.labels[1:7]:
        au, hidden = prototype_intensities(name)
        img = np.asarray(render_face(au, ident, 48, hidden_au=hidden), dtype=int)
        assert np.abs(img - base).mean() > 0.5, name


def test_prototypes_and_circumplex_cover_the_label_space():
    assert list(EXPRESSION_PROTOTYPES) == list(ABAW8.labels) == list(CIRCUMPLEX)
    au, _ = prototype_intensities("Happiness")
    assert au[AU_NAMES.index("AU6")] > 0.5 and au[AU_NAMES.index("AU12")] > 0.5
    assert CIRCUMPLEX["Happiness"][0] > 0 > CIRCUMPLEX["Sadness"][0]
    with pytest.raises(ValueError, match="unknown expression"):
        prototype_intensities("Joy")


def test_benchmark_frames_are_framed_like_a_detector_s_aligned_crops():
    # Inference aligns a real face by RetinaFace's five points onto the template of
    # affectmodel.alignment; the benchmark's frames put the drawn face there, so that RetinaFace, run
    # on a frame, finds its points where the template says (mean error 3.9 px at 112 px, measured
    # on 41 faces), where the free framing of before put them 11-22 px away.
    from affectmodel.alignment import canonical_template
    from affectmodel.inference.faces import create_detector

    detector = create_detector("retinaface")
    template = canonical_template(112)

    def worst_error(image):
        faces = detector.detect(np.pad(np.asarray(image), ((56, 56), (56, 56), (0, 0)), mode="edge"))
        assert faces, "no face found"
        return float(np.abs(faces[0].landmarks - 56 - template).max())

    rng = np.random.default_rng(7)
    framed, free = [], []
    for name in ("Neutral", "Happiness", "Sadness"):
        au, hidden = prototype_intensities(name, 0.8)
        ident = sample_identity(rng)
        framed.append(worst_error(render_face(au, ident, 112, hidden_au=hidden, framing=template)))
        free.append(worst_error(render_face(au, ident, 112, hidden_au=hidden)))
    assert max(framed) < 9 and min(free) > 10, (framed, free)
    seq = sample_sequence(4, np.random.default_rng(2), SynthConfig(size=112))  # with its pose's jitter
    assert worst_error(seq.render(1, 112)) < 12


def test_a_broad_smile_bares_the_teeth_and_a_closed_smile_does_not():
    ident = FaceParams()
    au, hidden = prototype_intensities("Happiness")  # AU6 + AU12 + AU25

    def bright_mouth(au_values):
        img = np.asarray(render_face(au_values, ident, 112, hidden_au=hidden), dtype=int)
        mouth = img[68:92, 30:82]
        return int(((mouth.min(axis=2) > 170) & (np.ptp(mouth, axis=2) < 40)).sum())  # white-ish pixels

    closed = au.copy()
    closed[AU_NAMES.index("AU25")] = 0.0
    # measured: 78 teeth pixels in the broad smile, none in the closed smile or the neutral face
    assert bright_mouth(au) > 50 and bright_mouth(closed) == 0 and bright_mouth(np.zeros(12)) == 0


# ------------------------------------------------------------------ sequences

def test_sequence_labels_follow_the_faces_and_vary_smoothly():
    seq = sample_sequence(300, np.random.default_rng(1))
    assert seq.expr.shape == (300,) and seq.au.shape == (300, 12) and seq.va.shape == (300, 2)
    assert seq.au_intensity.min() >= 0 and seq.au_intensity.max() <= 1
    assert np.abs(seq.va).max() <= 1
    # smooth: frame-to-frame changes are small compared with the range
    assert np.abs(np.diff(seq.au_intensity, axis=0)).mean() < 0.05
    # AU labels mostly agree with intensities (threshold + a little annotator noise)
    agree = (seq.au == (seq.au_intensity >= SynthConfig().au_threshold)).mean()
    assert 0.9 < agree < 1.0


def test_short_videos_keep_pose_in_range():
    """Regression: `synth --videos 200 --frames 10` failed ("x1 must be greater than or equal to
    x0"): the smooth pose drift of a short video was divided by its tiny sample std, blowing a
    near-constant offset up to a negative face scale."""
    rng = np.random.default_rng(0)
    for frames in (1, 2, 3, 5, 10) * 40:
        pose = sample_sequence(frames, rng).pose
        yaw, pitch, roll, scale, sx, sy = pose.T
        assert np.all((scale >= 0.7) & (scale <= 1.2)), scale
        assert np.abs(yaw).max() <= 0.5 and np.abs(pitch).max() < 0.6 and np.abs(roll).max() < 45
        assert np.abs(sx).max() < 0.25 and np.abs(sy).max() < 0.25
    seq = sample_sequence(10, np.random.default_rng(5))
    assert all(seq.render(t, 32).size == (32, 32) for t in range(len(seq)))
    with pytest.raises(ValueError, match="scale must be positive"):
        render_face(np.zeros(12), FaceParams(scale=-0.5), size=32)


def test_many_short_videos_generate(tmp_path):
    summary = generate_benchmark(tmp_path / "short", videos=30, frames=2, size=32, progress=False)
    assert sum(len(v) for v in summary["videos"].values()) == 30


def test_tasks_are_correlated():
    rng = np.random.default_rng(0)
    seqs = [sample_sequence(200, rng) for _ in range(15)]
    expr = np.concatenate([s.expr for s in seqs])
    au = np.concatenate([s.au for s in seqs])
    va = np.concatenate([s.va for s in seqs])
    happy, sad = expr == ABAW8.index("Happiness"), expr == ABAW8.index("Sadness")
    au12 = AU_NAMES.index("AU12")
    assert au[happy, au12].mean() > 0.6
    assert au[~happy, au12].mean() < 0.3
    assert va[happy, 0].mean() > 0.2 and va[sad, 0].mean() < -0.2


def test_other_mixtures_sit_on_the_circumplex_by_their_aus():
    assert mixture_circumplex({"AU12": 1.0, "AU6": 1.0})[0] > 0.5
    assert mixture_circumplex({"AU4": 1.0, "AU15": 1.0})[0] < -0.5
    assert mixture_circumplex({"AU5": 1.0, "AU25": 1.0, "AU26": 1.0})[1] > 0.5
    rng = np.random.default_rng(2)
    seqs = [sample_sequence(120, rng, SynthConfig(expression_weights=(0.1,) + (0.0,) * 6 + (0.9,)))
            for _ in range(10)]
    other = np.concatenate([s.expr for s in seqs]) == ABAW8.index("Other")
    face_valence = np.concatenate([s.au_intensity[:, AU_NAMES.index("AU12")]
                                   - s.au_intensity[:, AU_NAMES.index("AU15")]
                                   - s.au_intensity[:, AU_NAMES.index("AU4")] for s in seqs])
    valence = np.concatenate([s.va[:, 0] for s in seqs])
    assert np.corrcoef(face_valence[other], valence[other])[0, 1] > 0.4


def test_expression_deck_contains_every_class():
    draw = expression_deck(SynthConfig().expression_weights, np.random.default_rng(0))
    assert {draw() for _ in range(40)} == set(range(len(ABAW8)))


def test_config_validation():
    with pytest.raises(ValueError, match="expression_weights"):
        SynthConfig(expression_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="task_fractions"):
        SynthConfig(task_fractions={"pose": 0.5})
    with pytest.raises(ValueError, match="size"):
        SynthConfig(size=4)


# ------------------------------------------------------------------ benchmark layout

def test_layout_marker_and_annotation_files(bench):
    root, summary = bench
    assert (root / "cropped_aligned").is_dir()
    marker = read_marker(root)
    assert marker["dataset"] == "synthetic-affect" and marker["config"]["seed"] == 3
    lay = detect_layout(root)
    assert lay.layout == "newer" and set(lay.mtl_files) == {"train", "validation"}
    names = summary["videos"]["train"] + summary["videos"]["validation"]
    assert len(names) == 4 and all(summary["videos"][s] for s in ("train", "validation"))
    for split, videos in summary["videos"].items():
        for video in videos:
            n_images = len(list((root / "cropped_aligned" / video).glob("*.jpg")))
            assert 0 < n_images <= 8
            img = Image.open(next((root / "cropped_aligned" / video).glob("*.jpg")))
            assert img.size == (32, 32) and img.format == "JPEG"
            for task in marker["annotated_tasks"][video]:
                folder = {"expr": "EXPR_Recognition_Challenge", "au": "AU_Detection_Challenge",
                          "va": "VA_Estimation_Challenge"}[task]
                sub = "Train_Set" if split == "train" else "Validation_Set"
                ann = read_task_file(root / "annotations" / folder / sub / f"{video}.txt", task)
                assert len(ann) == 8  # one line per frame, also for frames without an image
    mtl = read_mtl_csv(root / "annotations" / "MTL_Challenge" / "training_set_annotations.txt")
    assert all(img.split("/")[0] in summary["videos"]["train"] for img in mtl.images)


def test_reader_loads_the_benchmark_and_counts_agree(bench):
    root, summary = bench
    for split in ("train", "validation"):
        per_task = load_affwild2(root, split)
        assert per_task.synthetic and per_task.dataset_name == "synthetic-affect"
        mtl = load_affwild2(root, split, source="mtl")
        assert sorted(map(str, per_task.image_paths)) == sorted(map(str, mtl.image_paths))
        for name, key in (("EXPR", "expr"), ("AU", "au"), ("VA", "va")):
            expected = summary["counts"][split][key]
            assert per_task.stats["tasks"][name] == expected
            assert mtl.stats["tasks"][name]["labelled"] == expected["labelled"]
        image, targets = per_task[0]
        assert image.shape == (3, 112, 112) and set(targets) == {"expr", "au", "va"}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = generate_benchmark(tmp_path / "a", seed=5, progress=False, **TINY)
    generate_benchmark(tmp_path / "b", seed=5, progress=False, **TINY)
    generate_benchmark(tmp_path / "c", seed=6, progress=False, **TINY)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    # the marker holds no time stamp or path: identical trees
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert a["dataset"] == "synthetic-affect"


def test_refuses_to_overwrite_other_data(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "thesis.txt").write_text("precious")
    with pytest.raises(ValueError, match="not empty"):
        generate_benchmark(tmp_path / "x", progress=False, **TINY)
    with pytest.raises(ValueError, match="refusing"):
        generate_benchmark(tmp_path / "x", overwrite=True, progress=False, **TINY)
    assert (tmp_path / "x" / "thesis.txt").read_text() == "precious"


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["synth", "--out", str(out), "--videos", "2", "--frames", "3", "--size", "24",
                     "--seed", "1", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dataset"] == "synthetic-affect" and sum(printed["videos"].values()) == 2
    assert cli_main(["synth", "--out", str(out), "--videos", "2", "--frames", "3", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli_main(["synth", "--out", str(out), "--videos", "2", "--frames", "3", "--size", "24",
                     "--quiet", "--overwrite"]) == 0


def test_contact_sheet(tmp_path):
    sheet = contact_sheet(tmp_path / "sheet.png", columns=2, size=32)
    assert (tmp_path / "sheet.png").is_file()
    assert sheet.height >= len(ABAW8) * 32 and sheet.width >= 2 * 32
    assert sample_identity(np.random.default_rng(0)) == sample_identity(np.random.default_rng(0))
