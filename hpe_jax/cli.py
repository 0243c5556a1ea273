"""How every command-line entry point ends on an expected error: one line, exit status 2.

``run_cli(main, verbose=...)`` calls ``main`` and returns its exit status; a ``UserError`` or an
``OSError`` (also one found behind another exception, as libraries wrap the OSError of a failed
write) becomes the line ``error: <what, where, what was expected>`` on stderr and status 2. With
``verbose`` or the environment variable ``HPE_JAX_TRACEBACK=1`` the exception propagates with its
traceback. Entry points end with ``sys.exit(main())`` (absl's ``app.run`` does that itself).
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from hpe_jax.errors import UserError

TRACEBACK_ENV = "HPE_JAX_TRACEBACK"
EXIT_USER_ERROR = 2
_OS_ERROR_CODE = re.compile(r"os_error_code='(\d+)'")


def os_error_in_chain(err: BaseException) -> OSError | None:
    """The first OSError among ``err`` and its causes / contexts, or one rebuilt from an error
    whose message carries the OS error code (tensorstore, under orbax, reports a failed write as
    ``ValueError: ...: No space left on device [os_error_code='28']``); None when there is none."""
    chain = []
    current: BaseException | None = err
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    for link in chain:
        if isinstance(link, OSError):
            return link
    for link in chain:
        if match := _OS_ERROR_CODE.search(str(link)):
            code = int(match.group(1))
            return OSError(code, os.strerror(code))
    return None


def describe_os_error(err: OSError, folder: str | Path | None = None) -> str:
    """One line for a failed file operation: the file (or ``folder`` when the error names none)
    and the cause; a full disk and a read-only or forbidden folder are named as such."""
    if err.filename is None and err.errno is None:
        return one_line(str(err))  # raised by this project with its own message
    where = err.filename or folder or "?"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}: no space left on the device (disk or quota full); free space and rerun"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}: not writable ({err.strerror}); choose a folder you may write to"
    return f"{where}: {err.strerror or err}"


def one_line(message: str, max_parts: int = 4) -> str:
    """``message`` as one line: its first ``max_parts`` non-empty lines joined by ``; `` (after
    a line ending in ``:`` by a space), then how many lines were left out."""
    parts = [part.strip() for part in str(message).splitlines() if part.strip()]
    line = ""
    for part in parts[:max_parts]:
        line += part if not line else (" " if line.endswith(":") else "; ") + part
    if len(parts) > max_parts:
        line += f"; ... ({len(parts) - max_parts} more)"
    return line


def run_cli(
    main: Callable[[], int | None], *, verbose: bool = False, folder: str | Path | None = None
) -> int:
    """The exit status of ``main()`` (0 for None); on a UserError or an OSError (in the
    exception's chain) prints one line on stderr and returns 2, unless ``verbose`` or
    ``HPE_JAX_TRACEBACK=1`` asks for the traceback. ``folder`` is named when a failed write does
    not name its file."""
    try:
        return main() or 0
    except Exception as err:
        if verbose or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        if isinstance(err, UserError):
            line = one_line(str(err))
        elif (os_err := os_error_in_chain(err)) is not None:
            line = describe_os_error(os_err, folder)
        else:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
