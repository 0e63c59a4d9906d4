"""Small file helpers shared by training, records, inference and publishing: atomic writes, and
the files under a folder (:func:`files_under`, symlinked folders followed, loops cut).

A write that fails leaves the earlier file as it was and no temporary file behind. A full disk
(which torch and safetensors report in their own words) becomes one :class:`DiskFullError` line
naming the destination folder and the space needed against the space free; any other file-system
error names the destination, never the hidden temporary file.
"""
from __future__ import annotations

import collections
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# How torch.save and safetensors report a write that the file system cut short.
_DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded")
_SHORT_WRITE_WORDS = ("unexpected pos", "failed writing file")  # torch's PyTorchStreamWriter


class DiskFullError(OSError):
    """No space left for a file; the earlier version of the file is intact. An ``OSError`` (errno
    ENOSPC) so command lines report it as one line like other file-system refusals."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def free_bytes(folder: str | os.PathLike) -> int:
    return shutil.disk_usage(folder).free


def _is_disk_full(error: BaseException, free: int, needed: int) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen)
        if any(w in text for w in _DISK_FULL_WORDS):
            return True
        # torch only says its writer stopped short: a full disk when the space is indeed missing.
        if any(w in text for w in _SHORT_WRITE_WORDS) and free < needed:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def disk_full_error(path: Path, needed: int | None, written: int, free: int) -> DiskFullError:
    folder = path.parent
    need = f"about {format_bytes(needed)}" if needed else f"more than {format_bytes(written)}"
    return DiskFullError(f"disk full ({os.strerror(errno.ENOSPC)}): cannot write {path.name} in {folder}: "
                         f"{need} needed, {format_bytes(free)} free (the earlier {path.name}, if any, is unchanged)")


def _without_tracebacks(error: BaseException) -> BaseException:
    seen: BaseException | None = error
    while seen is not None:
        seen.__traceback__ = None
        seen = seen.__cause__ or seen.__context__
    return error


def _naming_destination(error: OSError, tmp: Path, path: Path) -> OSError:
    """The same error, naming ``path`` where it named the temporary file."""
    if error.filename is None or Path(os.fsdecode(error.filename)) != tmp or error.strerror is None:
        return error
    renamed = type(error)(error.errno, error.strerror, os.fspath(path))
    renamed.__cause__ = error
    return renamed


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], size_hint: int | None = None) -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a half-written file,
    even if the process is killed mid-write.

    ``size_hint`` (bytes the file will take, if known) goes into the disk-full message.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # a full disk can refuse the folder itself
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            existing = next((f for f in (path.parent, *path.parents) if f.exists()), path.parent)
            raise disk_full_error(path, size_hint, 0, free_bytes(existing)) from e
        # A read-only or forbidden folder: name the file the user asked for, not our temporary one.
        raise type(e)(e.errno, e.strerror, os.fspath(path)) from e
    os.close(fd)
    tmp_path = Path(tmp)
    # Measured before writing: a failed writer (torch) may keep its file's blocks until collected.
    free = free_bytes(path.parent)
    try:
        # mkstemp creates 0600 files; run records and checkpoints are ordinary files others may read.
        os.chmod(tmp_path, 0o644)
        write(tmp_path)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except Exception as e:
        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        tmp_path.unlink(missing_ok=True)
        if isinstance(e, DiskFullError):
            raise  # already names its own file (e.g. a video written while this table was open)
        if _is_disk_full(e, free, size_hint or written + 1):
            # The writer's frames (torch keeps the deleted file open in them) would hold the
            # file's blocks for as long as the error lives: drop them, keep the message.
            raise disk_full_error(path, size_hint, written, free) from _without_tracebacks(e)
        if isinstance(e, OSError):
            renamed = _naming_destination(e, tmp_path, path)
            if renamed is not e:
                raise renamed from e
        raise
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), size_hint=len(text.encode("utf-8")))


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and paths appear in metrics and configs
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def files_under(root: str | os.PathLike) -> list[Path]:
    """Every file under ``root`` at any depth, sorted, following symbolic links to folders (a
    folder of links to video or run folders is read: ``Path.rglob`` does not follow them). Each real
    folder is read once, so a link back up the tree (a loop) or a second link to a folder already
    read adds nothing; a folder reached by several paths is named by the shortest (breadth first,
    then by name). Folders that cannot be listed and broken links are left out."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    queue = collections.deque([Path(root)])
    while queue:
        folder = queue.popleft()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir():  # follows a symbolic link
                    queue.append(folder / entry.name)
                elif entry.is_file():
                    found.append(folder / entry.name)
            except OSError:
                continue
    return sorted(found)
