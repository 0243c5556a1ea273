"""AFLW2000-3D reader: ``imageNNNNN.jpg`` + ``.mat`` (the 300W-LP keys plus ``pt3d_68``).

Pose as 300W-LP (``Pose_Para``, radians pitch/yaw/roll -> degrees yaw/pitch/roll). The tight
box is min / max of rows 0 / 1 of ``pt3d_68`` (3, 68), NOT of ``pt2d`` (2, 21), whose missing
points are -1; ``pt3d_68`` is stored as the landmarks. The standard |angle| <= 99 filter is
applied by the converter (on by default for this dataset).
"""

from __future__ import annotations

from pathlib import Path

from data_prep.common import (
    ConversionError,
    Sample,
    normalised_name,
    read_image_file,
    read_name_list,
    resolve_inside,
    tight_box,
)
from data_prep.w300lp import landmarks_from_mat, load_mat, pose_from_mat


def list_items(data_dir: Path, filename_list: Path | None, split: str) -> list[str]:
    """Relative names from the list file, else every ``*.jpg`` directly in ``data_dir``, sorted."""
    if filename_list is not None:
        return read_name_list(filename_list)
    names = sorted(p.stem for p in data_dir.glob("*.jpg"))
    if not names:
        raise ConversionError(f"{data_dir}: no .jpg files")
    return names


def load_sample(data_dir: Path, item: str) -> Sample:
    """Loads ``item`` (a relative name without extension) from ``data_dir``."""
    name = normalised_name(item)
    base = resolve_inside(data_dir, item, name, f"name {item!r}")
    image_bytes, image_format = read_image_file(base.with_name(base.name + ".jpg"), name)
    mat_path = base.with_name(base.name + ".mat")
    mat = load_mat(mat_path, name, ("Pose_Para", "pt3d_68"))
    landmarks = landmarks_from_mat(mat, "pt3d_68", 3, mat_path, name)
    return Sample(
        name=name,
        image_bytes=image_bytes,
        image_format=image_format,
        pose=pose_from_mat(mat, mat_path, name),
        box=tight_box(landmarks, name, mat_path, "pt3d_68"),
        landmarks=landmarks,
    )
