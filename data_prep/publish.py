"""Makes a prepared split of a TFDS dataset visible in the output folder, all at once.

A conversion prepares its split in a hidden folder beside the datasets (``staging_root``) and
then ``publish`` es it: a new dataset version folder is renamed into place; a split added to an
existing version has its record files moved in first, then ``metadata.json`` and, last,
``dataset_info.json`` (which lists the splits) replaced, so a reader sees the dataset before or
after, never in between. A split that the dataset already holds is replaced only on request
(``overwrite``). The new json files are written beside the old ones before anything moves, and
every move is a rename, so a failed publish (a full disk) is undone and leaves the dataset as it
was. The caller holds the output folder's lock (``hpe_jax.folder_lock``), so two runs never add
splits to one dataset at the same time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data_prep.common import ConversionError
from hpe_jax.errors import UserError

INFO_FILE = "dataset_info.json"
FEATURES_FILE = "features.json"
METADATA_FILE = "metadata.json"
SPLIT_RE = re.compile(r"[A-Za-z0-9_]+")


def check_split(split: str) -> str:
    """Returns ``split`` if it is a usable split name (letters, digits, ``_``; not ``all``)."""
    if not SPLIT_RE.fullmatch(split) or split == "all":
        raise UserError(f"split name {split!r} must be letters, digits or '_' (and not 'all')")
    return split


def staging_root(output_dir: Path, label: str, split: str) -> Path:
    """The hidden folder where this process prepares ``split`` of dataset ``label``."""
    return output_dir / f".{label}-{split}.tmp-{os.getpid()}"


def stale_staging(output_dir: Path, labels: Iterable[str]) -> list[Path]:
    """The staging folders (``staging_root``) of datasets ``labels`` in ``output_dir``: left by
    interrupted runs when this process holds the folder's lock (``hpe_jax.folder_lock``), as
    every conversion does while it writes. Nothing else there matches."""
    if not output_dir.is_dir():
        return []
    names = "|".join(re.escape(label) for label in labels)
    pattern = re.compile(rf"\.({names})-[A-Za-z0-9_]+\.tmp-\d+")
    return sorted(p for p in output_dir.iterdir() if pattern.fullmatch(p.name) and p.is_dir())


def read_json_object(path: Path) -> dict[str, Any]:
    """The json object in ``path`` ({} when there is no such file); ConversionError naming the
    file when it is not one (damaged or edited)."""
    if not path.is_file():
        return {}
    try:
        with path.open(encoding="utf-8") as f:
            value = json.load(f)
    except ValueError as err:  # json and unicode errors
        raise ConversionError(f"{path}: unreadable ({err})") from err
    if not isinstance(value, dict):
        raise ConversionError(f"{path}: not a json object ({str(value)[:40]})")
    return value


def _write_beside(path: Path, value: Any) -> Path:
    """Writes ``value`` as json into a hidden file beside ``path``; returns that file."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with temp.open("w", encoding="utf-8") as f:
            json.dump(value, f, indent=2, sort_keys=True)
            f.write("\n")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def split_sizes(version_dir: Path) -> dict[str, int]:
    """{split: record count} of the dataset version at ``version_dir``; {} when there is none."""
    info_path = version_dir / INFO_FILE
    splits = read_json_object(info_path).get("splits", [])
    try:
        return {s["name"]: sum(int(n) for n in s.get("shardLengths", [])) for s in splits}
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ConversionError(f"{info_path}: splits unreadable ({err!r})") from err


def refuse_existing(version_dir: Path, split: str) -> None:
    """Raises ConversionError (one line) when the dataset at ``version_dir`` holds ``split``."""
    sizes = split_sizes(version_dir)
    if split in sizes:
        raise ConversionError(
            f"{version_dir} already holds split {split!r} ({sizes[split]} records); not "
            "replaced: choose another --split or --output_dir, pass --overwrite to replace "
            "that split, or delete that dataset first"
        )


def refuse_foreign(version_dir: Path) -> None:
    """Raises ConversionError (one line) when ``version_dir`` exists but is not a dataset
    version folder (no ``dataset_info.json``) and is not an empty folder: the converter
    neither writes into nor replaces what it did not write."""
    if (version_dir / INFO_FILE).is_file() or not os.path.lexists(version_dir):
        return
    if version_dir.is_dir() and not version_dir.is_symlink():
        held = sorted(p.name for p in version_dir.iterdir())
        if not held:
            return
        what = f"holds {', '.join(held[:3])}{', ...' if len(held) > 3 else ''}"
    else:
        what = "is not a folder"
    raise ConversionError(
        f"{version_dir} {what} but no {INFO_FILE}: not a dataset written by python -m "
        "data_prep; not touched: choose another --output_dir or move it away"
    )


def _split_files(version_dir: Path, dataset: str, split: str) -> list[Path]:
    prefix = f"{dataset}-{split}."
    return sorted(p for p in version_dir.iterdir() if p.name.startswith(prefix))


def publish(prepared: Path, final: Path, split: str, *, overwrite: bool = False) -> None:
    """Moves the prepared dataset version folder ``prepared`` (holding ``split`` only) to
    ``final``, or adds its split to the dataset already at ``final`` (module docstring).

    With ``overwrite`` a split ``final`` already holds is replaced: its record files are moved
    into ``prepared`` (removed with it by the caller) before the new ones move in, so nothing of
    another split is touched; a reader during the swap may find that split's files missing. On
    any failure every move is undone and the error raised.
    """
    if not (final / INFO_FILE).is_file():
        refuse_foreign(final)
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
    new_info = read_json_object(prepared / INFO_FILE)
    info = read_json_object(final / INFO_FILE)
    (new_split,) = [s for s in new_info["splits"] if s["name"] == split]
    info["splits"] = [*(s for s in info.get("splits", []) if s["name"] != split), new_split]
    metadata_path = final / METADATA_FILE
    metadata = read_json_object(metadata_path)
    new_metadata = read_json_object(prepared / METADATA_FILE)
    rewrite_metadata = split in new_metadata or split in metadata
    metadata.pop(split, None)
    replaced = prepared / "replaced"
    replaced.mkdir()
    moves: list[tuple[Path, Path]] = []  # (source, target): undone by moving target to source

    def move(source: Path, target: Path) -> None:
        os.replace(source, target)
        moves.append((source, target))

    temps: list[tuple[Path, Path]] = []  # (new json beside, the file it replaces)
    try:
        if rewrite_metadata:
            temps.append(
                (_write_beside(metadata_path, {**metadata, **new_metadata}), metadata_path)
            )
        temps.append((_write_beside(final / INFO_FILE, info), final / INFO_FILE))
        for path in _split_files(final, new_info["name"], split):
            move(path, replaced / path.name)
        for path in _split_files(prepared, new_info["name"], split):
            move(path, final / path.name)
        for temp, path in temps:
            if path.is_file():  # kept to undo with, while the new file replaces it at once
                shutil.copyfile(path, replaced / path.name)  # not a link: FAT has none
                moves.append((path, replaced / path.name))
            move(temp, path)
    except BaseException:
        for source, target in reversed(moves):
            os.replace(target, source)
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
        raise
