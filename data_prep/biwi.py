"""BIWI reader, both prepared layouts, each npz file recognised by its ``image`` array's rank.

* Per-image npz (the original's): ``NAME.npz`` with ``image`` (H, W, 3) uint8 BGR and ``pose``
  (3,) = (yaw, pitch, roll) degrees; names (indices ``0``, ``1``, ...) come from the list file.
  Record name: ``NAME``.
* Aggregated per-split npz (FSA-Net preparation, e.g. ``BIWI_test.npz``): ``image`` (N, S, S, 3)
  uint8 BGR and ``pose`` (N, 3) degrees. Record names: ``NAME[i]``. Each worker process keeps
  the arrays of the last aggregated file it read in memory (N * S * S * 3 bytes).

Images are converted BGR -> RGB and stored as lossless PNG. They are face crops: no box.
Without a list file every ``*.npz`` directly in the data dir is read (numeric names in
numeric order); a folder holding several aggregated files is refused: pass the aggregated
file itself as ``--filename_list``, or list names (one a line without extension).
"""

from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.common import (
    ConversionError,
    Sample,
    SampleError,
    check_shape,
    encode_png,
    finite_array,
    normalised_name,
    read_name_list,
    resolve_inside,
    stored_float32,
)


@dataclass(frozen=True)
class BiwiItem:
    """One record to read from the npz ``path``: ``index`` into an aggregated file, or None.

    ``name`` is the file's relative name; ``problem`` is set when listing already found the
    file unusable.
    """

    name: str
    path: str
    index: int | None = None
    problem: str | None = None


def _npy_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) of array ``key`` of an npz, read from its header only; None if unreadable."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return shape, dtype


def _file_items(path: Path, name: str) -> list[BiwiItem]:
    """Items of one npz: N indexed items if it is a well-formed aggregated file, else one item.

    A file whose ``image`` is not 4-D is taken as per-image (and checked when loaded).
    """
    image = _npy_header(path, "image")
    if image is None or len(image[0]) != 4:
        return [BiwiItem(name, str(path))]
    (n, height, width, channels), dtype = image
    pose = _npy_header(path, "pose")
    if dtype != np.uint8 or channels != 3:
        problem = f"image: expected (N, S, S, 3) uint8, got {(n, height, width, channels)} {dtype}"
    elif pose is None:
        problem = "aggregated file without a readable 'pose' array"
    elif pose[0] != (n, 3):
        problem = f"pose: expected shape ({n}, 3) to match image, got {pose[0]}"
    else:
        return [BiwiItem(name, str(path), i) for i in range(n)]
    return [BiwiItem(name, str(path), problem=f"{problem}; all records of this file skipped")]


def _listed_items(data_dir: Path, filename_list: Path) -> list[BiwiItem]:
    items = []
    for entry in read_name_list(filename_list):
        name = normalised_name(entry)
        try:
            path = resolve_inside(data_dir, entry + ".npz", name, f"{filename_list}: {entry!r}")
        except SampleError as e:
            items.append(BiwiItem(name, e.path, problem=e.problem))
            continue
        items += _file_items(path, name)
    return items


def _sort_key(name: str) -> tuple[int, int, str]:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def list_items(data_dir: Path, filename_list: Path | None, split: str) -> list[BiwiItem]:
    """Items of the npz files to convert.

    ``filename_list``: a list file of names (``0``, ``1``, ... or ``BIWI_test``) relative to
    ``data_dir``, or one aggregated ``.npz`` file itself. Without it: every ``*.npz`` in
    ``data_dir``, refusing a folder with several aggregated files (FSA-Net keeps
    ``BIWI_train``, ``BIWI_test`` and ``BIWI_noTrack`` side by side: name the one to convert).
    """
    if filename_list is not None and filename_list.suffix == ".npz":
        return _file_items(filename_list, filename_list.stem)
    if filename_list is not None:
        return _listed_items(data_dir, filename_list)
    names = sorted((p.stem for p in data_dir.glob("*.npz")), key=_sort_key)
    if not names:
        raise ConversionError(f"{data_dir}: no .npz files")
    items = [item for name in names for item in _file_items(data_dir / f"{name}.npz", name)]
    aggregated = sorted({item.name for item in items if item.index is not None})
    if len(aggregated) > 1:
        raise ConversionError(
            f"{data_dir} holds several aggregated BIWI files {aggregated}: pass the one to "
            f"convert as --filename_list (e.g. {data_dir / aggregated[0]}.npz)"
        )
    return items


def _load_npz(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image, pose)`` arrays of an npz file, raising SampleError on any problem reading it."""
    if not path.is_file():
        raise SampleError(name, path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("image", "pose") if k not in npz.files]
            if missing:
                raise SampleError(name, path, f"missing key(s) {missing} (has {npz.files})")
            return npz["image"], npz["pose"]
    except SampleError:
        raise
    except Exception as e:  # numpy / zipfile raise many types on corrupt files
        raise SampleError(name, path, f"not a readable npz ({type(e).__name__}: {e})") from e


@functools.lru_cache(maxsize=1)
def _aggregated_arrays(path: Path, name: str) -> tuple[np.ndarray, np.ndarray] | SampleError:
    """Cached ``_load_npz`` of an aggregated file; a failure is cached too (returned)."""
    try:
        return _load_npz(path, name)
    except SampleError as e:
        return e


def _sample(name: str, path: Path, bgr: np.ndarray, pose: object) -> Sample:
    if bgr.dtype != np.uint8:
        raise SampleError(name, path, f"image: expected uint8, got {bgr.dtype}")
    check_shape(bgr, (None, None, 3), name, path, "image")
    pose_arr = finite_array(pose, name, path, "pose").reshape(-1)
    check_shape(pose_arr, (3,), name, path, "pose")
    return Sample(
        name=name,
        image_bytes=encode_png(bgr[..., ::-1]),
        image_format="png",
        pose=stored_float32(pose_arr, name, path, "pose"),
        box=None,
        landmarks=None,
    )


def load_sample(data_dir: Path, item: BiwiItem) -> Sample:
    """Loads one record: a per-image npz, or record ``item.index`` of an aggregated npz."""
    path = Path(item.path)
    if item.problem is not None:
        raise SampleError(item.name, path, item.problem)
    if item.index is None:
        image, pose = _load_npz(path, item.name)
        return _sample(item.name, path, image, pose)
    name = f"{item.name}[{item.index}]"
    arrays = _aggregated_arrays(path, item.name)
    if isinstance(arrays, SampleError):
        raise SampleError(name, path, arrays.problem)
    images, poses = arrays
    return _sample(name, path, images[item.index], poses[item.index])
