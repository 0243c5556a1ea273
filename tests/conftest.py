"""Shared test setup: CPU-only JAX, and the location of the shared design/sample files."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO.parent / "shared"

LOCK_HOLDER = """
import signal, sys
from hpe_jax.folder_lock import folder_lock
with folder_lock(sys.argv[1], "holding"):
    print("ready", flush=True)
    signal.pause()
"""


@pytest.fixture
def hold_lock():
    """``hold_lock(folder) -> pid``: starts a process holding ``folder``'s lock
    (``hpe_jax.folder_lock``) until it is killed (by the test, or at teardown)."""
    procs: list[subprocess.Popen] = []

    def start(folder: Path) -> int:
        proc = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(folder)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc.pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
