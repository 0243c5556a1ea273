"""Command-line parsing of the absl entry points (``train_main.py``, ``eval_main.py``): a bad
flag is one line and exit status 2, as ``hpe_jax.cli.run_cli`` makes every error after it.

    app.run(main, flags_parser=parse_flags)
"""

from __future__ import annotations

import os
import re
import sys

from absl import flags

from hpe_jax.cli import EXIT_USER_ERROR, TRACEBACK_ENV, one_line

# --config.a.b=value, --noconfig.a.b, -config.a.b value: a config-file flag's override.
_OVERRIDE = re.compile(r"--?(?:no)?\w+\.([\w.]+)(?:=.*)?")


def _unknown_key(err: LookupError | AttributeError, argv: list[str]) -> str:
    """The line for an override naming a key the config does not have (ml_collections raises
    a KeyError or AttributeError whose message is the key and, on a near miss, a hint)."""
    message = err.args[0] if err.args else ""
    while isinstance(message, BaseException):  # an AttributeError wrapping the KeyError
        message = message.args[0] if message.args else ""
    key, _, hint = str(message).partition("\n")
    key, hint = key.strip("'\""), one_line(hint)
    flag = next(
        (arg for arg in argv if (m := _OVERRIDE.fullmatch(arg)) and key in m[1].split(".")),
        None,
    )
    line = f"{flag}: the config has no key {key!r}" if flag else f"no config key {key!r}"
    return line + (f"; {hint[0].lower()}{hint[1:]}" if hint else "")


def parse_flags(argv: list[str]) -> list[str]:
    """Parses ``argv`` into ``absl.flags.FLAGS`` and returns the arguments left (absl's
    ``flags_parser``). An unknown flag, a value of the wrong type or an override of a key the
    config does not have (``--config.bach_size=64``) prints ``error: <one line>`` on stderr and
    exits with status 2; ``--verbose`` or ``HPE_JAX_TRACEBACK=1`` raises it with its traceback.
    """
    try:
        return flags.FLAGS(argv)
    except (flags.Error, KeyError, AttributeError) as err:
        if "--verbose" in argv or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        line = one_line(str(err)) if isinstance(err, flags.Error) else _unknown_key(err, argv)
        print(f"error: {line}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
