"""Makes a prepared split of a TFDS dataset visible in the output folder, all at once.

A conversion prepares its split in a hidden folder beside the datasets (``staging_root``) and
then ``publish`` es it: a new dataset version folder is renamed into place; a split added to an
existing version has its record files moved in first, then ``metadata.json`` and, last,
``dataset_info.json`` (which lists the splits) replaced, so a reader sees the dataset before or
after, never in between. A split that the dataset already holds is replaced only on request
(``overwrite``). The caller holds the output folder's lock (``hpe_jax.folder_lock``), so two
runs never add splits to one dataset at the same time.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from data_prep.common import ConversionError
from hpe_jax.errors import UserError

INFO_FILE = "dataset_info.json"
FEATURES_FILE = "features.json"
METADATA_FILE = "metadata.json"
SPLIT_RE = re.compile(r"[A-Za-z0-9_]+")
STAGING_RE = re.compile(r"\.[A-Za-z0-9_-]+-[A-Za-z0-9_]+\.tmp-\d+")


def check_split(split: str) -> str:
    """Returns ``split`` if it is a usable split name (letters, digits, ``_``; not ``all``)."""
    if not SPLIT_RE.fullmatch(split) or split == "all":
        raise UserError(f"split name {split!r} must be letters, digits or '_' (and not 'all')")
    return split


def staging_root(output_dir: Path, label: str, split: str) -> Path:
    """The hidden folder where this process prepares ``split`` of dataset ``label``."""
    return output_dir / f".{label}-{split}.tmp-{os.getpid()}"


def stale_staging(output_dir: Path) -> list[Path]:
    """The staging folders in ``output_dir``: left by interrupted runs when this process holds
    the folder's lock (``hpe_jax.folder_lock``), as every conversion does while it writes."""
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if STAGING_RE.fullmatch(p.name))


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def _replace_json(path: Path, value: Any) -> None:
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with temp.open("w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(temp, path)


def split_sizes(version_dir: Path) -> dict[str, int]:
    """{split: record count} of the dataset version at ``version_dir``; {} when there is none."""
    info_path = version_dir / INFO_FILE
    if not info_path.is_file():
        return {}
    return {
        s["name"]: sum(int(n) for n in s.get("shardLengths", []))
        for s in _read_json(info_path).get("splits", [])
    }


def refuse_existing(version_dir: Path, split: str) -> None:
    """Raises ConversionError (one line) when the dataset at ``version_dir`` holds ``split``."""
    sizes = split_sizes(version_dir)
    if split in sizes:
        raise ConversionError(
            f"{version_dir} already holds split {split!r} ({sizes[split]} records); not "
            "replaced: choose another --split or --output_dir, or delete that dataset first"
        )


def _split_files(version_dir: Path, dataset: str, split: str) -> list[Path]:
    prefix = f"{dataset}-{split}."
    return sorted(p for p in version_dir.iterdir() if p.name.startswith(prefix))


def publish(prepared: Path, final: Path, split: str, *, overwrite: bool = False) -> None:
    """Moves the prepared dataset version folder ``prepared`` (holding ``split`` only) to
    ``final``, or adds its split to the dataset already at ``final`` (module docstring).

    With ``overwrite`` a split ``final`` already holds is replaced: its record files are moved
    into ``prepared`` (removed with it by the caller) before the new ones move in, so nothing of
    another split is touched; a reader during the swap may find that split's files missing.
    """
    if not (final / INFO_FILE).is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(prepared, final)
        except OSError as e:
            raise ConversionError(f"{final}: cannot move the prepared dataset there ({e})") from e
        return
    if not overwrite:
        refuse_existing(final, split)
    if (prepared / FEATURES_FILE).read_bytes() != (final / FEATURES_FILE).read_bytes():
        raise ConversionError(
            f"{final} has other features than the prepared split {split!r} (written by another "
            "version of hpe-jax?); not merged: choose another --output_dir"
        )
    new_info = _read_json(prepared / INFO_FILE)
    info = _read_json(final / INFO_FILE)
    (new_split,) = [s for s in new_info["splits"] if s["name"] == split]
    replaced = prepared / "replaced"
    replaced.mkdir()
    for path in _split_files(final, new_info["name"], split):
        os.replace(path, replaced / path.name)
    for path in _split_files(prepared, new_info["name"], split):
        os.replace(path, final / path.name)
    new_metadata = (
        _read_json(prepared / METADATA_FILE) if (prepared / METADATA_FILE).is_file() else {}
    )
    metadata_path = final / METADATA_FILE
    metadata = _read_json(metadata_path) if metadata_path.is_file() else {}
    if split in new_metadata or split in metadata:
        metadata.pop(split, None)
        _replace_json(metadata_path, {**metadata, **new_metadata})
    info["splits"] = [*(s for s in info.get("splits", []) if s["name"] != split), new_split]
    _replace_json(final / INFO_FILE, info)
