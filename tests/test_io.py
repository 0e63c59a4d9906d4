"""affectmodel.io: atomic writes leave either the old file or the new one, never a mix."""
import errno
import json
import os
import stat

import pytest

from affectmodel.io import atomic_write, files_under, write_json_atomic, write_text_atomic


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


# ------------------------------------------------------------------ full disk, read-only folder

def test_full_disk_is_one_line_naming_folder_and_space_and_keeps_the_old_file(tmp_path):
    from small_fs import fill, mounted_tmpfs

    from affectmodel.io import DiskFullError

    with mounted_tmpfs(tmp_path / "fs", 2_000_000) as fs:
        target = write_json_atomic(fs / "run" / "metrics.json", {"epoch": 1})
        fill(fs, leave_bytes=20_000)
        big = {"values": list(range(50_000))}
        with pytest.raises(DiskFullError) as caught:
            write_json_atomic(target, big)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith("disk full (No space left on device): "
                                  f"cannot write metrics.json in {fs / 'run'}: about ")
        needed = len(json.dumps(big, indent=2)) / 1000
        assert f"about {needed:.1f} KB needed" in message or f"about {needed / 1000:.1f} MB needed" in message
        assert " free " in message
        assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
        assert json.loads(target.read_text()) == {"epoch": 1}
        assert sorted(p.name for p in (fs / "run").iterdir()) == ["metrics.json"]  # no temporary file


def test_a_full_disk_that_refuses_the_folder_is_the_same_one_line(tmp_path):
    """No room even for the output's new folder (here: no inode left): the same disk-full line
    naming the file, not a bare errno from mkdir."""
    from small_fs import mounted_tmpfs

    from affectmodel.io import DiskFullError

    with mounted_tmpfs(tmp_path / "fs", 1_000_000, inodes=2) as fs:
        (fs / "taken").write_text("x")  # the root folder and this file use both inodes
        with pytest.raises(DiskFullError) as caught:
            write_json_atomic(fs / "new" / "metrics.json", {"epoch": 1})
        assert str(caught.value).startswith(f"disk full (No space left on device): cannot write metrics.json in "
                                            f"{fs / 'new'}: ")
        assert sorted(p.name for p in fs.iterdir()) == ["taken"]


def test_full_disk_inside_a_foreign_writer_is_recognised(tmp_path):
    """torch and safetensors word a full disk their own way; atomic_write still says 'disk full'."""
    from small_fs import fill, mounted_tmpfs

    from affectmodel.io import DiskFullError

    with mounted_tmpfs(tmp_path / "fs", 1_000_000) as fs:
        fill(fs, leave_bytes=4_000)

        def short_write(tmp):
            with open(tmp, "wb") as f:
                f.write(b"x" * 4096)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

        with pytest.raises(DiskFullError, match=r"cannot write w\.pt .*about 50\.0 KB needed"):
            atomic_write(fs / "w.pt", short_write, size_hint=50_000)
        assert sorted(p.name for p in fs.iterdir()) == ["filler.bin"]


def test_short_write_with_space_left_is_not_called_disk_full(tmp_path):
    def short_write(tmp):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    with pytest.raises(RuntimeError, match="unexpected pos") as caught:
        atomic_write(tmp_path / "w.pt", short_write, size_hint=10)
    assert "disk full" not in str(caught.value)


def test_read_only_folder_error_names_the_output_not_the_temporary_file(tmp_path):
    from small_fs import mounted_tmpfs, remount_read_only

    with mounted_tmpfs(tmp_path / "fs", 1_000_000) as fs:
        (fs / "out").mkdir()
        remount_read_only(fs)
        with pytest.raises(OSError) as caught:
            write_text_atomic(fs / "out" / "scores.csv", "a,b\n")
        assert caught.value.filename == str(fs / "out" / "scores.csv")
        assert ".tmp" not in str(caught.value)
        assert caught.value.errno == errno.EROFS


def test_error_raised_on_the_temporary_file_names_the_output(tmp_path):
    target = tmp_path / "out.bin"

    def refuse(tmp):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp))

    with pytest.raises(PermissionError) as caught:
        atomic_write(target, refuse)
    assert caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_files_under_follows_symlinked_folders_once_and_cuts_loops(tmp_path):
    real = tmp_path / "real"
    (real / "video1").mkdir(parents=True)
    (real / "video1" / "00001.jpg").write_bytes(b"x")
    (real / "video2").mkdir()
    (real / "video2" / "clip.mp4").write_bytes(b"x")
    links = tmp_path / "links"
    links.mkdir()
    (links / "own.jpg").write_bytes(b"x")
    (links / "video1").symlink_to(real / "video1")
    (links / "again").symlink_to(real / "video1")       # a second link to a folder already read
    (links / "video2").symlink_to(real / "video2")
    (links / "loop").symlink_to(links)                  # a loop back to the top
    (links / "video2" / "up").symlink_to(tmp_path)      # and one through the parent
    (links / "dangling").symlink_to(tmp_path / "gone")  # a broken link
    # each file once, by the shortest path (then the first name): "again" comes before "video1"
    assert [p.relative_to(links).as_posix() for p in files_under(links)] == [
        "again/00001.jpg", "own.jpg", "video2/clip.mp4"]
    assert files_under(tmp_path / "missing") == []
