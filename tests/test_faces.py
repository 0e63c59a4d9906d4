import cv2
import numpy as np
import pytest
from media import astronaut, face_tile, faces_image, gradient_image, moving_face_frames, noise_image

from affectmodel.inference.faces import (
    DEFAULT_DETECT_MAX_SIDE,
    DETECTORS,
    RETINAFACE_TRAINING_SIDE,
    Face,
    create_detector,
    detect_faces,
    detection_max_side,
    detection_scale,
)
from affectmodel.inference.tracking import iou


@pytest.fixture(scope="module")
def retina():
    return create_detector("retinaface")


@pytest.fixture(scope="module")
def haar():
    return create_detector("haar")


def test_one_face_with_box_score_and_five_landmarks(retina):
    faces = retina.detect(astronaut())
    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    assert 160 < x1 < x2 < 290 and 40 < y1 < y2 < 200 and face.width > 60
    assert 0.9 < face.score <= 1.0
    lm = face.landmarks
    assert lm.shape == (5, 2)
    assert np.all((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2))
    left_eye, right_eye, nose, mouth_left, mouth_right = lm
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]   # image left first
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])  # eyes, nose, mouth
    assert face.to_dict()["landmarks"] == lm.tolist()


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_counts_and_left_to_right_order(retina, n):
    image, centres = faces_image(n)
    faces = retina.detect(image)
    assert len(faces) == n
    xs = [f.center[0] for f in faces]
    assert xs == sorted(xs)
    assert np.allclose(xs, centres, atol=12)  # each face sits in its own tile


@pytest.mark.parametrize("make", [noise_image, gradient_image,
                                  lambda: np.zeros((90, 120, 3), np.uint8), lambda: noise_image(360, 640, 3),
                                  lambda: np.full((8, 8, 3), 200, np.uint8)])
def test_no_face_is_an_empty_list(retina, haar, make):
    image = make()
    assert retina.detect(image) == []
    assert haar.detect(image) == []


def test_minimum_face_size(retina):
    image, _ = faces_image(2, height=120)
    faces = retina.detect(image)
    smallest = min(min(f.width, f.height) for f in faces)
    big_enough = create_detector("retinaface", min_face_size=smallest + 1).detect(image)
    assert len(faces) == 2 and len(big_enough) < 2
    assert all(min(f.width, f.height) >= smallest + 1 for f in big_enough)


def test_downscaled_detection_maps_back_to_full_resolution(retina):
    full = retina.detect(astronaut())[0]
    fast = create_detector("retinaface", max_side=256).detect(astronaut())
    assert len(fast) == 1
    assert iou(full.box, fast[0].box) > 0.8
    assert np.abs(fast[0].landmarks - full.landmarks).max() < 8  # within a few full-resolution pixels


def test_haar_fallback_finds_the_face_without_landmarks(retina, haar):
    faces = haar.detect(astronaut())
    assert len(faces) == 1
    assert faces[0].landmarks is None and 0 < faces[0].score < 1
    assert iou(faces[0].box, retina.detect(astronaut())[0].box) > 0.5
    image, _ = faces_image(3, height=200)
    xs = [f.center[0] for f in haar.detect(image)]
    assert len(xs) == 3 and xs == sorted(xs)


def test_boxes_are_clipped_to_the_image(retina):
    # A face cut by the left border still comes back with a box inside the image.
    image = np.ascontiguousarray(astronaut()[:, 200:])
    for face in retina.detect(image):
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= image.shape[1] and 0 <= y1 < y2 <= image.shape[0]


def test_factory_and_input_checks():
    assert set(DETECTORS) == {"retinaface", "haar"}
    with pytest.raises(ValueError, match="unknown face detector 'mtcnn'"):
        create_detector("mtcnn")
    with pytest.raises(ValueError, match="uint8 RGB"):
        detect_faces(np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detect_faces(np.zeros((20, 20, 3), np.float32))
    assert len(detect_faces(astronaut(), "haar")) == 1
    face = Face((1.0, 2.0, 11.0, 22.0), 0.5)
    assert (face.width, face.height, face.center) == (10.0, 20.0, (6.0, 12.0))


def test_private_session_gives_the_same_faces(retina):
    own = create_detector("retinaface", threads=1)
    for image in (astronaut(), faces_image(3)[0]):
        a, b = retina.detect(image), own.detect(image)
        assert len(a) == len(b) >= 1
        for fa, fb in zip(a, b, strict=True):
            assert fa.box == fb.box and np.array_equal(fa.landmarks, fb.landmarks)
            assert fa.score == pytest.approx(fb.score, abs=1e-5)


# ------------------------------------------------------------------ detection scale

def _group_photo(width: int, height: int) -> np.ndarray:
    """A small 'photo' of five faces of different sizes (the repo's test face, tiled)."""
    canvas = np.full((height, width, 3), 110, np.uint8)
    for (x, y, height) in [(20, 20, 150), (200, 30, 130), (380, 10, 170), (60, 200, 140), (330, 210, 120)]:
        tile = face_tile(height)
        canvas[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    return canvas


def _upscaled(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


def _assert_same_faces(faces, reference, scale_x: float, scale_y: float, tolerance: float = 0.08) -> None:
    """Same count, and each box within ``tolerance`` of its face's size from the reference box
    (mapped to the large image)."""
    assert len(faces) == len(reference)
    for face, ref in zip(faces, reference, strict=True):
        expected = np.array(ref.box) * [scale_x, scale_y, scale_x, scale_y]
        size = max(expected[2] - expected[0], expected[3] - expected[1])
        assert np.abs(np.array(face.box) - expected).max() <= tolerance * size, (face.box, expected)


@pytest.mark.parametrize("small_size,width,height", [((600, 400), 4000, 2668), ((640, 360), 3840, 2160)])
def test_default_detection_is_right_on_large_photos(retina, small_size, width, height):
    small = _group_photo(*small_size)
    reference = retina.detect(small)
    assert len(reference) == 5
    faces = retina.detect(_upscaled(small, width, height))
    _assert_same_faces(faces, reference, width / small.shape[1], height / small.shape[0])
    assert retina.max_side == DEFAULT_DETECT_MAX_SIDE


def test_default_detection_is_right_on_4k_video_frames(retina):
    frames = moving_face_frames(3, size=(640, 360), step=40)
    for frame in frames:
        reference = retina.detect(frame)
        assert len(reference) == 1
        _assert_same_faces(retina.detect(_upscaled(frame, 3840, 2160)), reference, 6.0, 6.0)


def test_landmarks_map_back_to_the_full_resolution_image(retina):
    small = astronaut()
    big = _upscaled(small, 2048, 2048)
    face, = retina.detect(big)
    ref, = retina.detect(small)
    assert np.abs(face.landmarks / 4 - ref.landmarks).max() < 3  # about a pixel of the small image


def test_detection_scale_rule():
    assert detection_scale((2668, 4000, 3)) == pytest.approx(DEFAULT_DETECT_MAX_SIDE / 4000)
    assert detection_scale((360, 640, 3)) == 1.0  # never upscaled
    assert detection_scale((2668, 4000, 3), max_side=0) == 1.0  # explicit full resolution
    assert detection_scale((112, 2420, 3)) == 1.0  # a strip of small faces keeps them
    assert detection_scale((2000, 8000, 3)) == pytest.approx(RETINAFACE_TRAINING_SIDE / 2000)  # panorama
    assert detection_max_side(None) == DEFAULT_DETECT_MAX_SIDE == 2 * RETINAFACE_TRAINING_SIDE
    for bad in (-1, 2.5, "640", True):
        with pytest.raises(ValueError, match="max_side"):
            detection_max_side(bad)


@pytest.mark.parametrize("name", DETECTORS)
def test_a_negative_or_non_numeric_smallest_face_is_refused(name):
    """``min_face_size=-5`` was accepted (it kept every face, as 0 does)."""
    for bad in (-5, -0.5, float("nan"), "20", True, None):
        with pytest.raises(ValueError, match="min_face_size must be a number of pixels >= 0"):
            create_detector(name, min_face_size=bad)
    assert getattr(create_detector(name, min_face_size=0), "min_face_size") == 0.0  # noqa: B009 - not in the protocol
    assert getattr(create_detector(name, min_face_size=np.int64(32)), "min_face_size") == 32.0  # noqa: B009
