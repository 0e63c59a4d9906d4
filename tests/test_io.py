"""affectmodel.io: atomic writes leave either the old file or the new one, never a mix."""
import json
import os
import stat

import pytest

from affectmodel.io import atomic_write, write_json_atomic, write_text_atomic


def test_write_json_atomic_round_trips_numpy_and_paths(tmp_path):
    import numpy as np

    path = write_json_atomic(tmp_path / "sub" / "m.json", {"a": np.float32(0.5), "b": np.arange(3), "p": tmp_path})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2], "p": str(tmp_path)}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_unserialisable_value_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json_atomic(tmp_path / "x.json", {"x": object()})
    assert not (tmp_path / "x.json").exists()
