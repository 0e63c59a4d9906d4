"""One writer per run folder: an exclusive lock file that a killed process does not leave stuck.

``with run_folder_lock(run_dir, purpose="train"):`` takes ``run_dir/.affectmodel-lock`` with an
OS lock (``fcntl.flock``), which the kernel drops when the holder exits or is killed, so two
processes racing on one folder cannot both pass and a SIGKILLed holder never blocks the next run.
The file records who holds it (pid, host, start time, purpose) for the error message and for the
stale-lock note. A lock file written on *another* host is never taken over silently: ``flock`` is
not shared between machines on every network filesystem, so its holder may still be running.

``ensure_not_being_written(run_dir)`` is the read guard for consumers (publish): it refuses a run
folder whose lock is held by a live process, without creating or changing anything.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = ".affectmodel-lock"


class RunFolderLockedError(OSError):
    """Another process holds (or may hold) the run folder's lock. An ``OSError`` (like a busy
    file) so command lines that report file-system refusals as one line report this one too."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: str
    purpose: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.purpose}, since {self.started})"


def lock_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / LOCK_FILE


def _read_holder(fd: int) -> LockHolder | None:
    """The holder recorded in an open lock file; None when empty or unreadable (a holder killed
    between creating and writing the file)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        data = json.loads(raw.decode("utf-8")) if raw.strip() else None
        if not isinstance(data, dict):
            return None
        return LockHolder(int(data["pid"]), str(data["host"]), str(data.get("started", "?")),
                          str(data.get("purpose", "?")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _wait_for_holder(fd: int, timeout: float = 1.0) -> LockHolder | None:
    """The holder of a busy lock, given a moment to write its record (it takes the OS lock first)."""
    deadline = time.monotonic() + timeout
    while (holder := _read_holder(fd)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return holder


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _same_file(fd: int, path: Path) -> bool:
    """The locked descriptor is still the file at ``path`` (not one a releasing holder unlinked)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _busy_message(run_dir: Path, holder: LockHolder | None) -> str:
    who = holder.describe() if holder else "another process"
    return f"run folder {run_dir} is being written by {who}: wait for it to finish or stop it"


@contextmanager
def run_folder_lock(run_dir: str | os.PathLike, purpose: str = "train") -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created if missing) for the ``with`` block.

    Raises :class:`RunFolderLockedError` (one line naming the folder and the holder's pid) when a
    live process holds it, or when the lock file names a process on another host. A lock left by
    a dead process on this host is taken over, with a note on stderr.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(run_dir)
    host = socket.gethostname()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_flock(fd, fcntl.LOCK_EX):
                raise RunFolderLockedError(_busy_message(run_dir, _wait_for_holder(fd)))
            if _same_file(fd, path):
                break
            # The previous holder unlinked the file between our open and our flock: start over on
            # the file now at ``path`` so two processes never hold locks on different files.
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        previous = _read_holder(fd)
        if previous is not None and previous.host != host:
            raise RunFolderLockedError(
                f"run folder {run_dir} is locked by {previous.describe()}, another machine: if that "
                f"process is gone, delete {path} and try again")
        if previous is not None and previous.pid != os.getpid() and _pid_alive(previous.pid):
            # The OS lock is free yet the recorded process runs: a filesystem that ignores flock.
            raise RunFolderLockedError(
                f"{_busy_message(run_dir, previous)} (if pid {previous.pid} is not that run, delete {path})")
        if previous is not None and previous.pid != os.getpid():
            print(f"note: took over the lock of {run_dir} left by {previous.describe()}, "
                  "which is no longer running", file=sys.stderr)
        record = {"pid": os.getpid(), "host": host, "purpose": purpose,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield path
    finally:
        # Unlink while still holding the lock; racers that opened the old file notice (_same_file).
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def ensure_not_being_written(run_dir: str | os.PathLike) -> None:
    """Refuse (``RunFolderLockedError``) a run folder whose lock is held by a live process, or
    whose lock file names a process on another machine. Creates and changes nothing."""
    run_dir = Path(run_dir)
    path = lock_path(run_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        holder = _read_holder(fd)
        if not _try_flock(fd, fcntl.LOCK_SH):
            raise RunFolderLockedError(_busy_message(run_dir, holder or _wait_for_holder(fd)))
        if holder is None:
            return
        if holder.host != socket.gethostname():
            raise RunFolderLockedError(
                f"run folder {run_dir} is locked by {holder.describe()}, another machine: if that "
                f"process is gone, delete {path} and try again")
        if holder.pid != os.getpid() and _pid_alive(holder.pid):
            # The OS lock is free yet the recorded process runs: a filesystem that ignores flock.
            raise RunFolderLockedError(_busy_message(run_dir, holder))
        # Same host, lock free, holder gone: a stale file left by a killed process.
    finally:
        os.close(fd)
