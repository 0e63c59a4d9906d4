"""Per-track windows of trunk features while a video streams (affectmodel.inference.temporal_stream)."""
import numpy as np
import pytest

from affectmodel.inference.temporal_stream import TemporalStream


def feature(track, frame):
    return np.array([track, frame], dtype=np.float32)


def test_causal_windows_come_at_once_and_hold_one_track_each():
    stream = TemporalStream(window=3, anchor=2)
    stream.push("f0", [1, 2], np.stack([feature(1, 0), feature(2, 0)]))
    (payload, windows), = stream.ready()
    assert payload == "f0" and windows.shape == (2, 3, 2)
    assert (windows[0] == feature(1, 0)).all()  # nothing before the track's first frame: it stands in
    stream.push("f1", [2], np.stack([feature(2, 1)]))  # track 1 missed in frame 1
    stream.push("f2", [1, 2], np.stack([feature(1, 2), feature(2, 2)]))
    done = stream.ready()
    assert [p for p, _ in done] == ["f1", "f2"]
    w1, w2 = done[1][1]
    assert w1[:, 1].tolist() == [0, 0, 2]   # frame 1 missing: frame 0 stands in; never track 2's face
    assert set(w1[:, 0]) == {1} and set(w2[:, 0]) == {2} and w2[:, 1].tolist() == [0, 1, 2]


def test_bidirectional_windows_wait_for_the_frames_after_them():
    stream = TemporalStream(window=5, anchor=2)
    for t in range(3):
        stream.push(t, [7], feature(7, t)[None])
    assert [p for p, _ in stream.ready()] == [0]   # frame 0 has its two frames after it
    stream.push(3, [8], feature(8, 3)[None])       # track 7 lost, track 8 starts
    (p, w), = stream.ready()
    assert p == 1 and w[0, :, 1].tolist() == [0, 0, 1, 2, 2]  # frames -1 and 3 of track 7: stand-ins
    rest = stream.ready(final=True)                # end of video: everything left
    assert [p for p, _ in rest] == [2, 3]
    assert rest[1][1][0, :, 0].tolist() == [8] * 5  # track 8 alone
    assert stream.held_frames() == 0 and len(stream) <= 2  # only what a next frame could still reach


def test_memory_stays_bounded_on_a_long_video():
    stream = TemporalStream(window=8, anchor=4)
    for t in range(500):
        stream.push(t, [t // 50, 1000], np.stack([feature(t // 50, t), feature(1000, t)]))
        stream.ready()
        assert len(stream) <= 2 * 8 and stream.held_frames() <= 4


def test_bad_arguments():
    with pytest.raises(ValueError, match="anchor"):
        TemporalStream(window=4, anchor=4)
    stream = TemporalStream(window=4, anchor=3)
    with pytest.raises(ValueError, match="2 track ids for 1"):
        stream.push(0, [1, 2], np.zeros((1, 2)))
