"""Ordered windows of consecutive frames per video (affectmodel.data.sequences)."""
import numpy as np
import pytest

from affectmodel.data.sequences import frame_windows, timelines, training_windows

# two tracks of one video (ids 0 and 1: "<v>_left", "<v>_right"), frames out of order, one gap
VIDEO_IDS = np.array([0, 0, 1, 0, 1, 0, 1, 0])
FRAMES = np.array([2, 1, 1, 3, 2, 6, 3, 5])   # video 0: 1 2 3 _ 5 6 ; video 1: 1 2 3


def test_timelines_order_frames_and_keep_tracks_apart():
    lines = timelines(VIDEO_IDS, FRAMES, max_gap=4)
    assert [line.tolist() for line in lines] == [[1, 0, 3, -1, 7, 5], [2, 4, 6]]


def test_a_long_gap_starts_a_new_timeline():
    lines = timelines(np.zeros(4, int), np.array([1, 2, 40, 41]), max_gap=8)
    assert [line.tolist() for line in lines] == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="twice"):
        timelines(np.zeros(2, int), np.array([3, 3]), max_gap=8)


def test_frame_windows_put_each_frame_at_its_anchor_and_fill_gaps_from_the_past():
    causal = frame_windows(VIDEO_IDS, FRAMES, window=3, anchor=2)
    assert (causal.index[:, 2] == np.arange(8)).all() and causal.present[:, 2].all()
    # frame 5 of video 0 (sample 7): frames 3, 4 (missing: stands in frame 3), 5
    assert causal.index[7].tolist() == [3, 3, 7] and causal.present[7].tolist() == [True, False, True]
    # the first frame of a track: nothing before it, it stands in for itself
    assert causal.index[1].tolist() == [1, 1, 1] and causal.present[1].tolist() == [False, False, True]
    centred = frame_windows(VIDEO_IDS, FRAMES, window=3, anchor=1)
    assert centred.index[4].tolist() == [2, 4, 6]          # track 1 only, never track 0
    assert centred.index[6].tolist() == [4, 6, 6]          # the track's last frame: the future stands in
    assert set(np.unique(centred.index[VIDEO_IDS == 1])) <= {2, 4, 6}


def test_training_windows_cover_every_frame_within_one_track():
    w = training_windows(VIDEO_IDS, FRAMES, window=4, stride=2)
    covered = set(w.index[w.present].tolist())
    assert covered == set(range(8))
    for row in w.index:
        assert len(set(VIDEO_IDS[row])) == 1  # never two tracks in one window
    short = training_windows(np.zeros(2, int), np.array([1, 2]), window=5, stride=1)
    assert short.index.shape == (1, 5) and short.present.tolist() == [[True, True, False, False, False]]
    with pytest.raises(ValueError, match="stride"):
        training_windows(VIDEO_IDS, FRAMES, window=4, stride=0)
    with pytest.raises(ValueError, match="anchor"):
        frame_windows(VIDEO_IDS, FRAMES, window=3, anchor=3)


def test_windows_work_on_a_reader_s_data_set(tmp_path):
    from affectmodel.data.affwild2 import load_affwild2
    from affectmodel.data.synthetic import SynthConfig, generate_benchmark

    cfg = SynthConfig(videos=8, frames=10, size=24, missing_image_fraction=0.15, pair_every=3)
    generate_benchmark(tmp_path, config=cfg, progress=False)
    ds = load_affwild2(tmp_path, "train")
    w = frame_windows(ds.video_ids, ds.frame_numbers, window=5, anchor=4)
    names = np.asarray(ds.video_names())
    assert all(len(set(names[row])) == 1 for row in w.index)  # _left and _right never mix
    gaps = ~w.present & (np.arange(5) > 0)
    assert gaps.any()  # missing images became stand-ins, not neighbours from elsewhere
