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
from array_record.python.array_record_module import ArrayRecordReader
from etils import epath
from PIL import Image

from hpe_jax.errors import UserError
from hpe_jax.pose import ANGLE_MIN

INFO_FILE = "dataset_info.json"
METADATA_FILE = "metadata.json"
# The dataset versions this code reads (``data_prep.builders.base.HeadPoseBuilder.VERSION``).
READ_VERSIONS = ("1.0.0",)
# The features this code reads: name -> (TFDS feature class, shape (None: any size), dtype).
FEATURES: dict[str, tuple[type, tuple[int | None, ...], type]] = {
    "image": (tfds.features.Image, (None, None, 3), np.uint8),
    "pose": (tfds.features.Tensor, (3,), np.float32),
    "rotation": (tfds.features.Tensor, (3, 3), np.float32),
    "name": (tfds.features.Text, (), np.object_),
    "box": (tfds.features.Tensor, (4,), np.float32),
    "landmarks": (tfds.features.Tensor, (None, None), np.float32),
}
REQUIRED_FEATURES = frozenset({"image", "pose", "rotation", "name"})
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
        raise UserError(f"{root} holds several datasets {names}: name one, e.g. {root / names[0]}")
    (versions,) = found.values()
    return max(versions, key=lambda v: tuple(int(x) for x in v.name.split(".")))


def open_dataset(path: str | os.PathLike[str]) -> tfds.core.DatasetBuilder:
    """TFDS's read-only builder of the dataset at ``path`` (``tfds.builder_from_directory``);
    UserError for metadata this code cannot read (unknown version, missing features)."""
    version_dir = dataset_dir(path)
    try:
        builder = tfds.builder_from_directory(version_dir)
    except Exception as err:  # TFDS raises json, key and proto errors for damaged metadata
        raise UserError(
            f"{version_dir}: unreadable dataset metadata ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    version = str(builder.info.version)
    if version not in READ_VERSIONS:
        raise UserError(
            f"{version_dir}: dataset version {version}; this hpe-jax reads "
            f"{', '.join(READ_VERSIONS)}"
        )
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise UserError(
            f"{version_dir}: records in {builder.info.file_format.value} files; this hpe-jax "
            "reads array_record files (python -m data_prep writes them)"
        )
    features = builder.info.features
    missing = sorted(REQUIRED_FEATURES - set(features))
    if missing:
        raise UserError(f"{version_dir}: the records lack feature(s) {missing}")
    for key, (kind, shape, dtype) in FEATURES.items():
        if key in features and (problem := _feature_problem(features[key], kind, shape, dtype)):
            raise UserError(f"{version_dir}/features.json: feature {key!r} {problem}")
    return builder


def _feature_problem(
    feature: Any, kind: type, shape: tuple[int | None, ...], dtype: type
) -> str | None:
    """How ``feature`` differs from a ``kind`` of ``shape`` and ``dtype``, or None."""
    want = f"{kind.__name__} {tuple('any' if n is None else n for n in shape)} {np.dtype(dtype)}"
    if not isinstance(feature, kind):
        return f"is a {type(feature).__name__}; this hpe-jax reads a {want}"
    got_shape, got_dtype = tuple(feature.shape), np.dtype(feature.np_dtype)
    same_shape = len(got_shape) == len(shape) and all(
        expected is None or expected == got for expected, got in zip(shape, got_shape, strict=True)
    )
    if same_shape and got_dtype == dtype:
        return None
    return f"is a {type(feature).__name__} {got_shape} {got_dtype}; this hpe-jax reads a {want}"


def check_split(builder: tfds.core.DatasetBuilder, split: str) -> int:
    """The record count of ``split``, checked against its record files (``verify_split_files``);
    UserError naming the dataset's splits if it has none."""
    splits = builder.info.splits
    if split not in splits:
        raise UserError(
            f"{builder.data_dir} has no split {split!r} (splits: {', '.join(sorted(splits))})"
        )
    verify_split_files(builder, split)
    return splits[split].num_examples


def verify_split_files(builder: tfds.core.DatasetBuilder, split: str) -> None:
    """Raises a UserError naming the record file of ``split`` that is missing, unreadable, or
    holds another number of records than ``dataset_info.json`` says (local datasets; a bucket's
    files are checked as they are read)."""
    info = builder.info.splits[split]
    for path, expected in zip(info.filepaths, info.shard_lengths, strict=True):
        if "://" in os.fspath(path):
            return
        if not path.exists():
            raise UserError(
                f"{path}: record file of split {split!r} missing ({INFO_FILE} lists it)"
            )
        try:
            reader = ArrayRecordReader(os.fspath(path))
            count = reader.num_records()
            reader.close()
        except Exception as err:  # array_record raises RuntimeError / ValueError for damage
            raise UserError(
                f"{path}: damaged record file ({str(err).splitlines()[0] if str(err) else err!r})"
            ) from err
        if count != expected:
            raise UserError(
                f"{path}: holds {count} records, {INFO_FILE} says {expected}: the metadata was "
                "edited or the file replaced; convert the split again"
            )


def num_records(path: str | os.PathLike[str], split: str) -> int:
    """Number of records of ``split`` of the dataset at ``path``."""
    return check_split(open_dataset(path), split)


def split_metadata(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, Any]:
    """What the converter recorded about ``split`` (source, skipped and filtered samples) in
    ``metadata.json``; UserError naming that file when it is unreadable or not a mapping of
    split -> mapping whose ``filtered`` / ``skipped`` entries are lists."""
    check_split(builder, split)
    path = f"{builder.data_dir}/{METADATA_FILE}"
    try:
        metadata = builder.info.metadata or {}
    except Exception as err:  # TFDS reads the file on first use: json and unicode errors
        raise UserError(
            f"{path}: unreadable ({_first_line(err)}); convert the split again"
        ) from err
    entry = metadata.get(split, {}) if isinstance(metadata, dict) else None
    if not isinstance(entry, dict) or any(
        not isinstance(entry.get(key, []), list) for key in ("filtered", "skipped")
    ):
        raise UserError(
            f"{path}: not what python -m data_prep writes (split {split!r}: "
            f"{str(entry if isinstance(metadata, dict) else metadata)[:60]}); convert the split "
            "again"
        )
    return dict(entry)


def check_trainable(path: str | os.PathLike[str], split: str) -> None:
    """Raises a UserError when the converter recorded (``metadata.json``, ``angle_ranges``)
    that ``split`` of the dataset at ``path`` holds poses the angle bins cannot label (any
    |angle| >= 100 degrees: converted with ``--no_angle_filter``, for evaluation only), which
    training would refuse when the first such record comes up."""
    builder = open_dataset(path)
    ranges = split_metadata(builder, split).get("angle_ranges") or {}
    try:
        spans = {str(angle): (float(low), float(high)) for angle, (low, high) in ranges.items()}
    except (AttributeError, TypeError, ValueError) as err:
        raise UserError(
            f"{builder.data_dir}/{METADATA_FILE}: angle_ranges of split {split!r} unreadable "
            f"({str(ranges)[:80]}); convert the split again"
        ) from err
    for angle, (low, high) in spans.items():
        if max(abs(low), abs(high)) >= -ANGLE_MIN:
            raise UserError(
                f"{builder.data_dir} split {split!r}: {angle} ranges over [{low:g}, {high:g}] "
                f"degrees, but the angle bins label |angle| < {-ANGLE_MIN:g} only (converted "
                "with --no_angle_filter, for evaluation); convert it again without that flag "
                "to train on it"
            )


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
    info = builder.info.splits[split]
    return FileNamingSource(
        builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()}),
        [os.fspath(p) for p in info.filepaths],
        [int(n) for n in info.shard_lengths],
    )


class FileNamingSource(Sequence[dict[str, Any]]):
    """A random-access source whose read errors name the record file and the record in it
    (array_record reports a damaged chunk without the file)."""

    def __init__(self, source: Sequence[Any], files: list[str], lengths: list[int]):
        self._source = source
        self._files = files
        self._starts = np.cumsum([0, *lengths])

    def __len__(self) -> int:
        return len(self._source)

    def _where(self, index: int) -> str:
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        shard = min(max(shard, 0), len(self._files) - 1)
        return f"{self._files[shard]}, record {index - int(self._starts[shard])}"

    def __getitem__(self, index: Any) -> Any:
        try:
            return self._source[index]
        except (IndexError, KeyError):
            raise
        except Exception as err:  # array_record raises RuntimeError for a damaged chunk
            raise UserError(f"{self._where(int(index))}: unreadable ({_first_line(err)})") from err

    def __getitems__(self, indices: Sequence[int]) -> Sequence[Any]:
        try:
            return self._source.__getitems__(indices)  # type: ignore[attr-defined]
        except Exception:
            return [self[i] for i in indices]  # raises naming the damaged record


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


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
