"""The entry points' error line (hpe_jax.cli) and the folder lock (hpe_jax.folder_lock)."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from hpe_jax.cli import TRACEBACK_ENV, run_cli
from hpe_jax.errors import UserError
from hpe_jax.folder_lock import LOCK_FILE, FolderBusyError, folder_lock


def _raise(err: BaseException) -> None:
    raise err


def test_user_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: _raise(UserError("config.batch_size: 0\nexpected a positive integer")))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("error: config.batch_size: 0; expected a positive integer\n")


def test_wrapped_disk_full_names_the_folder(capsys: pytest.CaptureFixture[str]) -> None:
    def write() -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise RuntimeError("open() failed") from err

    with pytest.raises(SystemExit) as exit_info:
        run_cli(write, folder="/data/out")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: /data/out: no space left on the device")
    assert err.count("\n") == 1


def test_traceback_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError):
        run_cli(lambda: _raise(UserError("x")), verbose=True)
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(UserError):
        run_cli(lambda: _raise(UserError("x")))


def test_programming_errors_keep_their_traceback() -> None:
    with pytest.raises(KeyError):
        run_cli(lambda: _raise(KeyError("x")))


def _hold(folder: str, ready: multiprocessing.synchronize.Event) -> None:
    with folder_lock(folder, "holding"):
        ready.set()
        signal.pause()


def test_live_holder_is_refused_with_its_pid_and_a_dead_one_is_taken_over(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready))
    holder.start()
    try:
        assert ready.wait(30)
        busy = pytest.raises(FolderBusyError, match=f"pid {holder.pid} on .*holding")
        with busy, folder_lock(tmp_path, "second"):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    with folder_lock(tmp_path, "third") as previous:
        assert previous is not None and f"pid {holder.pid}" in previous
    with folder_lock(tmp_path, "fourth") as previous:
        assert previous is None
    assert (tmp_path / LOCK_FILE).read_text() == ""
