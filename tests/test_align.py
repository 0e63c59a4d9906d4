import dataclasses

import cv2
import numpy as np
import pytest
from media import astronaut

from affectmodel.inference.align import (
    ARCFACE_TEMPLATE_112,
    align_face,
    canonical_template,
    crop_box,
    face_crop,
    similarity_transform,
)
from affectmodel.inference.faces import Face, create_detector


@pytest.fixture(scope="module")
def astronaut_face():
    return create_detector("retinaface").detect(astronaut())[0]


def _apply(matrix, points):
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = np.deg2rad(23.0), 1.7, np.array([12.5, -40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(1).uniform(0, 100, (5, 2))
    dst = src @ rot.T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], rot, atol=1e-9) and np.allclose(matrix[:, 2], shift, atol=1e-7)


def test_similarity_transform_never_reflects():
    src = np.random.default_rng(2).uniform(0, 100, (5, 2))
    mirrored = src * [-1, 1] + [0.3, 0.0] * src[:, :1]  # a mirror image, slightly sheared
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    assert np.isclose(matrix[0, 0], matrix[1, 1]) and np.isclose(matrix[0, 1], -matrix[1, 0])


def test_template_margin_and_size():
    assert np.allclose(canonical_template(112, margin=0.0), ARCFACE_TEMPLATE_112)
    assert np.allclose(canonical_template(224, margin=0.0), ARCFACE_TEMPLATE_112 * 2)
    tight, loose = canonical_template(112, 0.0), canonical_template(112, 0.3)
    # a margin shrinks the landmark layout about the crop centre: more of the head is in view
    assert np.linalg.norm(loose[1] - loose[0]) == pytest.approx(np.linalg.norm(tight[1] - tight[0]) / 1.3)
    assert np.allclose(loose - 56, (tight - 56) / 1.3)
    with pytest.raises(ValueError):
        canonical_template(0)


def test_aligned_landmarks_land_on_the_template(astronaut_face):
    size = 112
    crop = align_face(astronaut(), astronaut_face.landmarks, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    matrix = similarity_transform(astronaut_face.landmarks, canonical_template(size))
    moved = _apply(matrix, astronaut_face.landmarks)
    # a real (smiling) face fits the template to within a few pixels
    error = np.linalg.norm(moved - canonical_template(size), axis=1)
    assert error.mean() < 5 and error.max() < 8
    # the crop shows the face: eyes level, skin-coloured centre, not the black border
    assert crop[40:80, 40:80].mean() > 80


def test_alignment_undoes_in_plane_rotation(astronaut_face):
    detector = create_detector("retinaface")
    image = astronaut()
    upright = align_face(image, astronaut_face.landmarks, 112).astype(np.float32)
    centre = (256.0, 256.0)
    rotation = cv2.getRotationMatrix2D(centre, 25.0, 1.0)
    rotated = cv2.warpAffine(image, rotation, (512, 512))
    faces = detector.detect(rotated)
    assert len(faces) == 1
    realigned = align_face(rotated, faces[0].landmarks, 112).astype(np.float32)
    naive = crop_box(rotated, faces[0].box, 112).astype(np.float32)
    err_aligned = np.abs(realigned - upright)[16:96, 16:96].mean()
    err_naive = np.abs(naive - upright)[16:96, 16:96].mean()
    assert err_aligned < 25 and err_aligned < err_naive


def test_box_crop_is_square_centred_and_black_outside():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_box(image, (80, 80, 120, 120), size=32, margin=0.0)  # half outside the image
    assert crop.shape == (32, 32, 3)
    assert crop[:12, :12].mean() > 190 and crop[-12:, -12:].max() == 0
    with pytest.raises(ValueError):
        crop_box(image, (10, 10, 10, 10))


def test_face_crop_uses_landmarks_or_falls_back_to_the_box(astronaut_face):
    with_landmarks = face_crop(astronaut(), astronaut_face, 64)
    assert np.array_equal(with_landmarks, align_face(astronaut(), astronaut_face.landmarks, 64))
    no_landmarks = dataclasses.replace(astronaut_face, landmarks=None)
    assert np.array_equal(face_crop(astronaut(), no_landmarks, 64), crop_box(astronaut(), astronaut_face.box, 64))
    degenerate = dataclasses.replace(astronaut_face, landmarks=np.full((5, 2), 200.0, np.float32))
    assert face_crop(astronaut(), degenerate, 64).shape == (64, 64, 3)  # box fallback, no crash


def test_shrinking_a_large_face_is_antialiased():
    stripes = np.zeros((800, 800, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-pixel stripes alias badly if sampled without averaging
    crop = crop_box(stripes, (0, 0, 800, 800), size=40, margin=0.0)
    assert abs(float(crop.mean()) - 127.5) < 10 and crop.std() < 20


def test_landmark_shape_is_checked():
    with pytest.raises(ValueError, match="5 landmarks"):
        align_face(astronaut(), np.zeros((4, 2)), 112)
    face = Face((0, 0, 10, 10), 1.0, None)
    assert face_crop(np.zeros((20, 20, 3), np.uint8), face, 16).shape == (16, 16, 3)
