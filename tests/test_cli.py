"""The entry points' error line (hpe_jax.cli) and the folder lock (hpe_jax.folder_lock)."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from hpe_jax.cli import TRACEBACK_ENV, one_line, run_cli
from hpe_jax.errors import UserError
from hpe_jax.folder_lock import LOCK_FILE, FolderBusyError, folder_lock


def _raise(err: BaseException) -> None:
    raise err


def test_user_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(lambda: _raise(UserError("config.batch_size: 0\nexpected a positive integer")))
    assert status == 2
    assert capsys.readouterr().err == "error: config.batch_size: 0; expected a positive integer\n"
    assert one_line("bad keys:\n a\n b\n c\n d\n e") == "bad keys: a; b; c; ... (2 more)"


def test_wrapped_disk_full_names_the_folder(capsys: pytest.CaptureFixture[str]) -> None:
    def write() -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise RuntimeError("open() failed") from err

    assert run_cli(write, folder="/data/out") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: /data/out: no space left on the device")
    assert err.count("\n") == 1


def test_tensorstore_disk_full_names_the_folder(capsys: pytest.CaptureFixture[str]) -> None:
    message = (
        'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at local file "/wd/1.orbax-'
        'checkpoint-tmp/model/": Failed to write 6950912 bytes to file 7: No space left on '
        "device [os_error_code='28']"
    )
    assert run_cli(lambda: _raise(ValueError(message)), folder="/wd") == 2
    assert capsys.readouterr().err.startswith("error: /wd: no space left on the device")


def test_traceback_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError):
        run_cli(lambda: _raise(UserError("x")), verbose=True)
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(UserError):
        run_cli(lambda: _raise(UserError("x")))


def test_programming_errors_keep_their_traceback() -> None:
    with pytest.raises(KeyError):
        run_cli(lambda: _raise(KeyError("x")))


def test_live_holder_is_refused_with_its_pid_and_a_dead_one_is_taken_over(tmp_path, hold_lock):
    pid = hold_lock(tmp_path)
    busy = pytest.raises(FolderBusyError, match=f"pid {pid} on .*holding")
    with busy, folder_lock(tmp_path, "second"):
        pass
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with folder_lock(tmp_path, "third") as previous:
        assert previous is not None and f"pid {pid}" in previous
    with folder_lock(tmp_path, "fourth") as previous:
        assert previous is None
    assert not (tmp_path / LOCK_FILE).exists()
