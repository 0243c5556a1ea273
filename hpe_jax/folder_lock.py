"""One writer per folder: an advisory lock with liveness, for dataset outputs and workdirs.

``folder_lock(folder, purpose)`` holds an exclusive ``flock`` on ``folder/.hpe_jax.lock`` while
its block runs. The kernel releases the lock when the holder exits, however it ends, so a dead
holder never blocks anyone; a live holder's lock is refused with its pid, host and purpose. The
file keeps the holder's line while it runs and is emptied on a clean exit, so the next holder
learns whether the previous one was interrupted (and may clean what it left).
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


@contextlib.contextmanager
def folder_lock(folder: str | Path, purpose: str) -> Iterator[str | None]:
    """Holds ``folder``'s lock (the folder is created) while the block runs.

    Yields the line of a previous holder that ended without releasing it (it was killed or
    crashed: its leftovers may be cleaned), or None after a clean release or for a new folder.
    Raises FolderBusyError naming the live holder's pid, host and purpose.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise FolderBusyError(
                f"{folder} is in use by {holder}; not started ({purpose}): wait for it to end "
                "or stop it"
            ) from None
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip() or None
        line = f"pid {os.getpid()} on {socket.gethostname()} ({purpose})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, line.encode(), 0)
        yield previous
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
