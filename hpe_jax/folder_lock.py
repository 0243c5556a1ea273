"""One writer per folder: an advisory lock with liveness, for dataset outputs and workdirs.

``folder_lock(folder, purpose)`` holds an exclusive ``flock`` on ``folder/.hpe_jax.lock`` while
its block runs. The kernel releases the lock when the holder exits, however it ends, so a dead
holder never blocks anyone; a live holder's lock is refused with its pid, host and purpose. The
file holds the holder's line while it runs and is removed when the block ends, so a file found
with a line in it was left by a killed holder, whose leftovers the next holder may clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from hpe_jax.errors import UserError

LOCK_FILE = ".hpe_jax.lock"


class FolderBusyError(UserError):
    """Another live process holds the folder's lock."""


def _acquire(path: Path, purpose: str) -> int:
    """An open descriptor of ``path`` holding its exclusive flock (created when missing)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FolderBusyError(
                f"{path.parent} is in use by {holder}; not started ({purpose}): wait for it to "
                "end or stop it"
            ) from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        locked = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (
            locked.st_dev,
            locked.st_ino,
        ):
            return fd
        os.close(fd)  # the holder removed the file between our open and flock: start again


@contextlib.contextmanager
def folder_lock(folder: str | Path, purpose: str) -> Iterator[str | None]:
    """Holds ``folder``'s lock (the folder is created) while the block runs.

    Yields the line of a previous holder that ended without releasing it (it was killed: its
    leftovers may be cleaned), or None. The lock file is removed when the block ends, also by
    an exception. Raises FolderBusyError naming the live holder's pid, host and purpose.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = _acquire(path, purpose)
    try:
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip() or None
        line = f"pid {os.getpid()} on {socket.gethostname()} ({purpose})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, line.encode(), 0)
        yield previous
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
