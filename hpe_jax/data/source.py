"""Reads the TFDS datasets that ``python -m data_prep`` writes (TFDS's own reader, no
TensorFlow): where a dataset is, its splits and metadata, and its records.

A dataset is named by a path (local, or a bucket through ``etils.epath``): its version folder
(``OUT/aflw2000/1.0.0``, the one holding ``dataset_info.json``), its dataset folder
(``OUT/aflw2000``, newest version) or a TFDS data dir holding exactly one dataset (``OUT``).

Records (``record``) are dicts: ``name`` str, ``pose`` (3,) float32 (yaw, pitch, roll)
degrees, ``rotation`` (3, 3) float32, ``box`` (4,) float32 tight (x_min, y_min, x_max, y_max)
pixels or None, ``landmarks`` (R, K) float32 or None, ``image_bytes`` (the stored JPEG / PNG).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

INFO_FILE = "dataset_info.json"
_VERSION_RE = re.compile(r"\d+\.\d+\.\d+")
# Version folders below a data dir: <name>/<version> or <name>/<config>/<version>.
_SEARCH_DEPTHS = ("*", "*/*", "*/*/*")


def _is_version_dir(path: epath.Path) -> bool:
    return bool(_VERSION_RE.fullmatch(path.name)) and (path / INFO_FILE).exists()


def dataset_dir(path: str | os.PathLike[str]) -> epath.Path:
    """The version folder of the dataset at ``path`` (module docstring).

    Raises FileNotFoundError when ``path`` holds no dataset, ValueError when it holds several.
    """
    root = epath.Path(path)
    if (root / INFO_FILE).exists():
        return root
    found: dict[str, list[epath.Path]] = {}
    for depth in _SEARCH_DEPTHS:
        for info in root.glob(f"{depth}/{INFO_FILE}"):
            version = info.parent
            relative = version.relative_to(root).parts
            hidden = any(part.startswith((".", "incomplete")) for part in relative)
            if not hidden and _is_version_dir(version):
                found.setdefault(str(version.parent), []).append(version)
    if not found:
        raise FileNotFoundError(
            f"{root}: no TFDS dataset there ({INFO_FILE} of a version folder such as "
            "OUT/aflw2000/1.0.0); convert one with python -m data_prep"
        )
    if len(found) > 1:
        names = sorted(os.path.relpath(d, os.fspath(root)) for d in found)
        raise ValueError(f"{root} holds several datasets {names}: name one, e.g. {root / names[0]}")
    (versions,) = found.values()
    return max(versions, key=lambda v: tuple(int(x) for x in v.name.split(".")))


def open_dataset(path: str | os.PathLike[str]) -> tfds.core.DatasetBuilder:
    """TFDS's read-only builder of the dataset at ``path`` (``tfds.builder_from_directory``)."""
    return tfds.builder_from_directory(dataset_dir(path))


def check_split(builder: tfds.core.DatasetBuilder, split: str) -> int:
    """The record count of ``split``; ValueError naming the dataset's splits if it has none."""
    splits = builder.info.splits
    if split not in splits:
        raise ValueError(
            f"{builder.data_dir} has no split {split!r} (splits: {', '.join(sorted(splits))})"
        )
    return splits[split].num_examples


def num_records(path: str | os.PathLike[str], split: str) -> int:
    """Number of records of ``split`` of the dataset at ``path``."""
    return check_split(open_dataset(path), split)


def split_metadata(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, Any]:
    """What the converter recorded about ``split`` (source, skipped and filtered samples)."""
    check_split(builder, split)
    return dict((builder.info.metadata or {}).get(split, {}))


def dataset_label(builder: tfds.core.DatasetBuilder) -> str:
    """``name`` or ``name_config`` of a dataset, e.g. ``aflw2000``, ``synthetic_heads_biwi``."""
    config = builder.info.config_name
    return f"{builder.name}_{config}" if config else builder.name


def has_boxes(builder: tfds.core.DatasetBuilder) -> bool:
    """Whether the dataset's records carry a face box (False for face crops such as BIWI)."""
    return "box" in builder.info.features


def split_source(path: str | os.PathLike[str], split: str) -> Sequence[dict[str, Any]]:
    """Random-access source of ``split``'s examples (TFDS ``ArrayRecordDataSource``), with the
    image left encoded: element ``i`` is TFDS's dict of numpy values, ``image`` as bytes; turn
    it into a record with ``record``. Picklable, for grain worker processes."""
    builder = open_dataset(path)
    check_split(builder, split)
    return builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})


def record(example: dict[str, Any]) -> dict[str, Any]:
    """A source element as a record (module docstring), image not decoded."""
    name = example["name"]
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "pose": np.asarray(example["pose"], np.float32),
        "rotation": np.asarray(example["rotation"], np.float32),
        "box": None if "box" not in example else np.asarray(example["box"], np.float32),
        "landmarks": None
        if "landmarks" not in example
        else np.asarray(example["landmarks"], np.float32),
        "image_bytes": example["image"],
    }


def decode_image(image_bytes: bytes) -> np.ndarray:
    """Decodes encoded image bytes to an (H, W, 3) uint8 RGB array."""
    with Image.open(io.BytesIO(image_bytes)) as img:
        return np.asarray(img.convert("RGB"))
