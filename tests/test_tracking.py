import numpy as np
import pytest

from affectmodel.inference.faces import Face
from affectmodel.inference.tracking import IoUTracker, iou, iou_matrix


def _face(x, y=10, w=40, h=50, score=0.99):
    return Face((float(x), float(y), float(x + w), float(y + h)), score)


def test_iou_values():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # empty boxes: no division by zero
    m = iou_matrix([(0, 0, 10, 10), (5, 0, 15, 10)], [(0, 0, 10, 10), (100, 100, 110, 110), (5, 0, 15, 10)])
    assert m.shape == (2, 3) and np.allclose(m[:, 1], 0) and m[0, 0] == pytest.approx(1) == m[1, 2]
    assert iou_matrix([], [(0, 0, 1, 1)]).shape == (0, 1)


def test_ids_stay_with_moving_faces():
    tracker = IoUTracker()
    history = {}
    for t in range(20):
        faces = [_face(10 + 3 * t), _face(200 - 2 * t)]  # moving toward each other, never overlapping
        for track_id, face in tracker.update(faces):
            history.setdefault(track_id, []).append(face.box[0])
    assert sorted(history) == [1, 2]
    assert history[1] == [10 + 3 * t for t in range(20)]
    assert history[2] == [200 - 2 * t for t in range(20)]


def test_output_follows_the_order_of_the_detections():
    tracker = IoUTracker()
    first = tracker.update([_face(0), _face(100)])
    second = tracker.update([_face(2), _face(102)])
    assert [tid for tid, _ in first] == [tid for tid, _ in second] == [1, 2]
    swapped = tracker.update([_face(104), _face(4)])  # detector order changed: ids follow the boxes
    assert [tid for tid, _ in swapped] == [2, 1]


def test_new_faces_get_new_ids_and_lost_tracks_end():
    tracker = IoUTracker(max_missed=1)
    assert [t for t, _ in tracker.update([_face(0)])] == [1]
    assert [t for t, _ in tracker.update([_face(1), _face(300)])] == [1, 2]
    assert tracker.update([_face(301)]) == [(2, _face(301))]          # face 1 missed once: kept
    assert tracker.active_ids == [1, 2]
    assert [t for t, _ in tracker.current()] == [2]                      # but not shown
    assert [t for t, _ in tracker.update([_face(2), _face(302)])] == [1, 2]  # back within max_missed
    tracker.update([_face(303)])
    tracker.update([_face(304)])                                         # face 1 missed twice: ended
    assert tracker.active_ids == [2]
    assert [t for t, _ in tracker.update([_face(3), _face(305)])] == [3, 2]  # a new id, never a reused one


def test_a_jump_larger_than_the_overlap_threshold_starts_a_new_track():
    tracker = IoUTracker(iou_threshold=0.5)
    tracker.update([_face(0)])
    assert tracker.update([_face(30)])[0][0] == 2  # IoU(10/70) below 0.5


def test_each_track_matches_at_most_one_face():
    tracker = IoUTracker(iou_threshold=0.1)
    tracker.update([_face(0)])
    ids = [t for t, _ in tracker.update([_face(5), _face(-5)])]  # both overlap the one track
    assert sorted(ids) == [1, 2]


def test_current_lists_the_latest_boxes_left_to_right():
    tracker = IoUTracker()
    tracker.update([_face(200), _face(0)])
    assert [f.box[0] for _, f in tracker.current()] == [0.0, 200.0]
    with pytest.raises(ValueError):
        IoUTracker(iou_threshold=1.5)


@pytest.mark.parametrize("k", [1, 12])  # 320x180, and the same scene in 4K (thumbnails sample pixels there)
def test_new_face_possible_ignores_the_tracked_people_and_sees_the_rest(k):
    from affectmodel.inference.tracking import motion_thumbnail, new_face_possible

    rng = np.random.default_rng(0)
    still = np.clip(100 + rng.normal(0, 3, (180 * k, 320 * k, 3)), 0, 255).astype(np.uint8)  # sensor noise
    person = [(1, Face((140.0 * k, 40.0 * k, 180.0 * k, 90.0 * k), 0.99))]
    noisy = np.clip(still + rng.normal(0, 3, still.shape), 0, 255).astype(np.uint8)  # the next frame's noise
    assert not new_face_possible(motion_thumbnail(still), motion_thumbnail(noisy), still.shape, person)
    body_moved = still.copy()
    body_moved[100 * k:180 * k, 130 * k:190 * k] = 200  # below the tracked face: their body
    assert not new_face_possible(motion_thumbnail(still), motion_thumbnail(body_moved), still.shape, person)
    entered = still.copy()
    entered[40 * k:100 * k, 0:40 * k] = 220  # something at the left edge, far from the tracked face
    assert new_face_possible(motion_thumbnail(still), motion_thumbnail(entered), still.shape, person)
    assert new_face_possible(None, motion_thumbnail(still), still.shape, person)  # no previous frame


def test_follow_updates_boxes_of_live_tracks_only():
    tracker = IoUTracker()
    (a, _), (b, fb) = tracker.update([Face((0, 0, 10, 10), 1.0), Face((50, 0, 60, 10), 1.0)])
    moved = Face((2, 0, 12, 10), 1.0)
    tracker.follow([(a, moved)])
    assert dict(tracker.current()) == {a: moved, b: fb}


# ------------------------------------------------------------------ following by optical flow

def _scene(*corners: tuple[float, float], zoom: float = 1.0, width: int = 320) -> np.ndarray:
    """A 240 px high frame with a real face (scikit-image's astronaut), ``zoom`` times 100 px, with
    its top-left corner at each of ``corners`` (sub-pixel, by an affine warp), over a flat grey
    background; no corners: an empty scene."""
    import cv2
    from skimage import data

    face = data.astronaut()[30:230, 150:350]  # head, 200 x 200
    frame = np.full((240, width, 3), 90, np.uint8)
    for x, y in corners:
        m = np.array([[zoom / 2, 0, x], [0, zoom / 2, y]], np.float32)
        cv2.warpAffine(face, m, (width, 240), dst=frame, borderMode=cv2.BORDER_TRANSPARENT, flags=cv2.INTER_LINEAR)
    return frame


def _tracked_face(x: float, y: float, side: float = 100.0) -> Face:
    # landmarks at fixed places of the face (eyes, nose, mouth corners), as a detector gives them
    rel = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.58], [0.38, 0.75], [0.62, 0.75]], np.float32)
    return Face((x, y, x + side, y + side), 0.99, rel * side + np.array([x, y], np.float32))


def test_follow_moves_the_box_and_landmarks_with_the_face():
    from affectmodel.inference.tracking import follow_tracks

    for dx, dy in ((6.0, -3.0), (-11.5, 4.25), (0.0, 0.0)):
        followed = follow_tracks(_scene((100, 70)), _scene((100 + dx, 70 + dy)), [(7, _tracked_face(100, 70))])
        assert followed is not None and followed[0][0] == 7
        face = followed[0][1]
        assert face.box == pytest.approx((100 + dx, 70 + dy, 200 + dx, 170 + dy), abs=0.6)
        expected = _tracked_face(100 + dx, 70 + dy).landmarks
        assert np.abs(face.landmarks - expected).max() < 0.6 and face.score == 0.99


def test_follow_scales_the_box_when_the_face_comes_closer():
    from affectmodel.inference.tracking import follow_tracks

    followed = follow_tracks(_scene((100, 70)), _scene((95, 65), zoom=1.1), [(1, _tracked_face(100, 70))])
    assert followed is not None
    x1, y1, x2, y2 = followed[0][1].box
    assert x2 - x1 == pytest.approx(110, abs=3) and y2 - y1 == pytest.approx(110, abs=3)
    assert (x1 + x2) / 2 == pytest.approx(150, abs=1.5) and (y1 + y2) / 2 == pytest.approx(120, abs=1.5)


def test_follow_reports_a_lost_face():
    from affectmodel.inference.tracking import follow_tracks

    start = _scene((100, 70))
    face = [(1, _tracked_face(100, 70))]
    assert follow_tracks(start, _scene(), face) is None                        # gone: nothing to follow
    assert follow_tracks(start, start[::-1].copy(), face) is None              # replaced by something else
    assert follow_tracks(start, start[:200], face) is None                     # frames of different sizes
    off = [(1, _tracked_face(330, 70))]                                         # box outside the frame
    assert follow_tracks(start, start, off) is None


def test_follow_keeps_several_faces_apart_and_orders_them_left_to_right():
    from affectmodel.inference.tracking import follow_tracks

    first = _scene((10, 60), (300, 60), width=480)
    second = _scene((14, 60), (296, 60), width=480)  # walking toward each other
    faces = [(5, _tracked_face(300, 60)), (2, _tracked_face(10, 60))]
    followed = follow_tracks(first, second, faces)
    assert followed is not None and [t for t, _ in followed] == [2, 5]
    assert followed[0][1].box[0] == pytest.approx(14, abs=0.6)
    assert followed[1][1].box[0] == pytest.approx(296, abs=0.6)
