"""300W-LP reader: ``FOLDER/NAME.jpg`` + ``FOLDER/NAME.mat`` in eight folders (``_Flip`` included).

Pose from ``Pose_Para`` (radians, order pitch, yaw, roll) to degrees in (yaw, pitch, roll)
order; tight face box = min / max of the ``pt2d`` (2, 68) landmarks, which are stored too.
The MATLAB-file helpers here are shared with the AFLW2000-3D reader (same keys).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from data_prep.common import (
    ConversionError,
    Sample,
    SampleError,
    check_shape,
    finite_array,
    normalised_name,
    read_image_file,
    read_name_list,
    resolve_inside,
    stored_float32,
    tight_box,
)

FOLDERS = ("AFW", "AFW_Flip", "HELEN", "HELEN_Flip", "IBUG", "IBUG_Flip", "LFPW", "LFPW_Flip")

log = logging.getLogger(__name__)


def load_mat(path: Path, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """``scipy.io.loadmat`` of ``path``, raising SampleError if unreadable or missing ``keys``."""
    if not path.is_file():
        raise SampleError(name, path, "file not found")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises many types on corrupt files; any means bad input
        problem = f"not a readable MATLAB file ({type(e).__name__}: {e})"
        raise SampleError(name, path, problem) from e
    missing = [k for k in keys if k not in mat]
    if missing:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise SampleError(name, path, f"missing key(s) {missing} (keys present: {present})")
    return mat


def pose_from_mat(mat: dict[str, Any], path: Path, name: str) -> np.ndarray:
    """(yaw, pitch, roll) float32 degrees from ``Pose_Para`` (1, 7): pitch, yaw, roll radians;
    SampleError if complex, not finite, or not finite once float32 degrees."""
    para = finite_array(mat["Pose_Para"], name, path, "Pose_Para")
    check_shape(para, (1, 7), name, path, "Pose_Para")
    pitch, yaw, roll = para[0, :3]
    with np.errstate(over="ignore"):
        pose = np.degrees(np.array([yaw, pitch, roll])).astype(np.float32)
    if not np.all(np.isfinite(pose)):
        raise SampleError(
            name,
            path,
            f"Pose_Para: the pose is not finite in float32 degrees (pitch, yaw, roll radians "
            f"{para[0, :3].tolist()})",
        )
    return pose


def landmarks_from_mat(
    mat: dict[str, Any], key: str, rows: int, path: Path, name: str
) -> np.ndarray:
    """``mat[key]`` as (rows, K) float32 landmarks, checked finite in float32."""
    points = finite_array(mat[key], name, path, key)
    check_shape(points, (rows, None), name, path, key)
    if points.shape[1] == 0:
        raise SampleError(name, path, f"{key}: no points")
    return stored_float32(points, name, path, key)


def list_items(data_dir: Path, filename_list: Path | None, split: str) -> list[str]:
    """Relative names (``FOLDER/NAME``) from the list file, else from scanning the eight folders."""
    if filename_list is not None:
        return read_name_list(filename_list)
    names: list[str] = []
    missing = []
    for folder in FOLDERS:
        if (data_dir / folder).is_dir():
            names += sorted(f"{folder}/{p.stem}" for p in (data_dir / folder).glob("*.jpg"))
        else:
            missing.append(folder)
    if not names:
        raise ConversionError(f"{data_dir}: no .jpg files in any of the folders {list(FOLDERS)}")
    if missing:
        log.warning("%s: 300W-LP folders not found, converting without them: %s", data_dir, missing)
    return names


def load_sample(data_dir: Path, item: str) -> Sample:
    """Loads ``item`` (a relative name without extension) from ``data_dir``."""
    name = normalised_name(item)
    base = resolve_inside(data_dir, item, name, f"name {item!r}")
    image_bytes, image_format = read_image_file(base.with_name(base.name + ".jpg"), name)
    mat_path = base.with_name(base.name + ".mat")
    mat = load_mat(mat_path, name, ("Pose_Para", "pt2d"))
    pose = pose_from_mat(mat, mat_path, name)
    landmarks = landmarks_from_mat(mat, "pt2d", 2, mat_path, name)
    return Sample(
        name=name,
        image_bytes=image_bytes,
        image_format=image_format,
        pose=pose,
        box=tight_box(landmarks, name, mat_path, "pt2d"),
        landmarks=landmarks,
    )
