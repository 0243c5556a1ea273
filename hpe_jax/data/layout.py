"""Where a converted split lives on disk: shard names, metadata file, temporary names.

A split ``NAME`` converted into ``OUT`` is

* ``OUT/NAME.array_record-00000-of-00004`` ... ``-00003-of-00004``: the ArrayRecord shards, and
* ``OUT/NAME.json``: its metadata, written last; a split counts as finished only when it exists.

While a conversion runs, shards are written as ``OUT/.NAME.array_record-...-of-....tmp-PID``
(hidden, never matching the shard pattern) and renamed when all are complete.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SHARD_PATTERN = "{split}.array_record-{index:05d}-of-{num_shards:05d}"
SPLIT_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def check_split(split: str) -> str:
    """Returns ``split`` if it is a usable split name (letters, digits, ``_ - .``), else raises."""
    if not SPLIT_RE.fullmatch(split):
        raise ValueError(
            f"split name {split!r} must be letters, digits, '_', '-' or '.' (not first)"
        )
    return split


def shard_name(split: str, index: int, num_shards: int) -> str:
    """File name of shard ``index`` (0-based) of ``num_shards`` of a split."""
    return SHARD_PATTERN.format(split=check_split(split), index=index, num_shards=num_shards)


def shard_name_re(split: str) -> re.Pattern[str]:
    """Regex matching the name of any finished shard of ``split``, whatever the shard count."""
    return re.compile(re.escape(check_split(split)) + r"\.array_record-\d{5}-of-\d{5}")


def metadata_path(output_dir: str | Path, split: str) -> Path:
    """Path of the metadata json of a split."""
    return Path(output_dir) / f"{check_split(split)}.json"


def temp_path(final: Path, pid: int) -> Path:
    """Temporary name of ``final`` while process ``pid`` writes it (hidden, never a shard name)."""
    return final.with_name(f".{final.name}.tmp-{pid}")


def stale_temporaries(output_dir: str | Path, split: str) -> list[Path]:
    """Temporary shard / metadata files of ``split`` left behind in ``output_dir``."""
    pattern = re.compile(
        r"\." + re.escape(check_split(split)) + r"(\.array_record-\d{5}-of-\d{5}|\.json)\.tmp-\d+"
    )
    directory = Path(output_dir)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if pattern.fullmatch(p.name))


def read_metadata(output_dir: str | Path, split: str) -> dict[str, Any]:
    """The metadata dict of a finished split; FileNotFoundError if the split is not finished."""
    path = metadata_path(output_dir, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no finished conversion of split {split!r} in {output_dir} "
            "(the metadata json is written last)"
        )
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def shard_paths(output_dir: str | Path, split: str) -> list[str]:
    """Paths of the shards of a finished split, in order.

    Reads ``OUT/<split>.json`` for the shard count and checks that every shard exists; raises
    FileNotFoundError naming what is missing.
    """
    meta = read_metadata(output_dir, split)
    num_shards = int(meta["num_shards"])
    paths = [Path(output_dir) / shard_name(split, i, num_shards) for i in range(num_shards)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{output_dir}: split {split!r} lists {num_shards} shards but {missing} are missing"
        )
    return [str(p) for p in paths]
