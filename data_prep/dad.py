"""DAD-3DHeads reader: the original's preprocessed json, or the official release.

* Preprocessed (what the original HPE code reads): a json list of ``{img_path, bbox, R}``.
* Official release: ``train.json`` / ``val.json`` / ``test.json``, lists of ``{item_id,
  annotation_path, img_path, bbox, attributes}``, with ``annotations/<item_id>.json`` holding
  ``model_view_matrix`` (4x4); there ``R = (diag(1, -1, -1, 1) @ model_view_matrix)[:3, :3]``.

The layout is the preprocessed one when any entry has an ``R`` key. Without ``--filename_list``
the converter reads ``<data_dir>/<split>.json``. Every path (``img_path``, ``annotation_path``)
is relative to the data dir and must stay inside it.

Angles (the original's formula): R is orthonormalised by SVD, then
``a = Rotation.from_matrix(R.T).as_euler('xyz', degrees=True)``; yaw = a[1], pitch = a[0] - 180
wrapped into (-180, 180], roll = a[2]. The |angle| > 99 filter is applied by the converter.
Face box: the tight box ``bbox`` [x, y, w, h] -> (x, y, x + w, y + h). No landmarks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from data_prep.common import (
    ConversionError,
    Sample,
    SampleError,
    check_shape,
    finite_array,
    read_image_file,
    refuse_duplicates,
    resolve_inside,
    stored_float32,
)

# DAD's model_view_matrix -> the benchmark's rotation (a frontal face gives diag(1, -1, -1)).
CAMERA_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class DadItem:
    """Entry ``index`` of the annotation json ``source``; ``layout``: preprocessed / official."""

    index: int
    entry: Any
    layout: str
    source: str


def wrap_degrees(angle: float) -> float:
    """``angle`` in degrees wrapped into (-180, 180]."""
    return 180.0 - (180.0 - angle) % 360.0


def euler_from_dad_rotation(rot: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) degrees of a DAD rotation (3, 3), by the original's formula.

    ``rot`` must be a proper rotation (orthonormal, det +1); see ``orthonormalise``.
    """
    a = Rotation.from_matrix(rot.T).as_euler("xyz", degrees=True)
    return np.array([a[1], wrap_degrees(a[0] - 180.0), a[2]])


def orthonormalise(matrix: np.ndarray, name: str, where: str) -> np.ndarray:
    """Nearest rotation (SVD, U @ Vt) to a (3, 3) matrix that may carry a scale."""
    u, s, vt = np.linalg.svd(matrix)
    if s[-1] <= 1e-6 * s[0]:
        raise SampleError(name, where, f"rotation is singular (singular values {s.tolist()})")
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        raise SampleError(name, where, "rotation has det < 0 (a reflection, not a rotation)")
    return rot


def list_items(data_dir: Path, filename_list: Path | None, split: str) -> list[DadItem]:
    """Entries of the annotation json (``filename_list``, else ``data_dir/<split>.json``)."""
    path = Path(filename_list) if filename_list is not None else data_dir / f"{split}.json"
    try:
        with path.open(encoding="utf-8") as f:
            entries = json.load(f)
    except OSError as e:
        raise ConversionError(f"{path}: cannot read the DAD annotation json ({e})") from e
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: not valid json ({e})") from e
    if not isinstance(entries, list) or not entries:
        raise ConversionError(f"{path}: expected a non-empty json list of entries")
    refuse_duplicates(
        path,
        "entry(ies)",
        [
            (f"entry {i}", e["img_path"])
            for i, e in enumerate(entries)
            if isinstance(e, dict) and isinstance(e.get("img_path"), str)
        ],
    )
    has_rotation = any(isinstance(e, dict) and "R" in e for e in entries)
    layout = "preprocessed" if has_rotation else "official"
    return [DadItem(i, e, layout, str(path)) for i, e in enumerate(entries)]


def _field(entry: dict[str, Any], key: str, name: str, where: str) -> Any:
    if key not in entry:
        raise SampleError(name, where, f"missing key {key!r} (keys present: {sorted(entry)})")
    return entry[key]


def _official_rotation(data_dir: Path, entry: dict[str, Any], name: str, where: str) -> np.ndarray:
    if "annotation_path" in entry:
        relative = entry["annotation_path"]
    else:
        relative = f"annotations/{_field(entry, 'item_id', name, where)}.json"
    path = resolve_inside(data_dir, relative, name, f"{where}: annotation_path")
    try:
        with path.open(encoding="utf-8") as f:
            annotation = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SampleError(name, path, f"cannot read the annotation json ({e})") from e
    if not isinstance(annotation, dict):
        raise SampleError(name, path, "expected a json object")
    mvm = finite_array(
        _field(annotation, "model_view_matrix", name, str(path)), name, path, "model_view_matrix"
    )
    check_shape(mvm, (4, 4), name, path, "model_view_matrix")
    return (CAMERA_FLIP @ mvm)[:3, :3]


def load_sample(data_dir: Path, item: DadItem) -> Sample:
    """Loads one annotation entry: checks its paths, box and rotation, reads the image."""
    entry = item.entry
    img_path = entry.get("img_path") if isinstance(entry, dict) else None
    where = f"{item.source}: entry {item.index} (img_path {img_path!r})"
    name = os.path.splitext(os.path.normpath(img_path))[0] if isinstance(img_path, str) else where
    if not isinstance(entry, dict):
        raise SampleError(name, item.source, f"entry {item.index}: expected a json object")
    image_path = resolve_inside(data_dir, _field(entry, "img_path", name, where), name, where)
    bbox = finite_array(_field(entry, "bbox", name, where), name, where, "bbox")
    check_shape(bbox, (4,), name, where, "bbox")
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise SampleError(name, where, f"bbox: width and height must be > 0, got {bbox.tolist()}")
    if item.layout == "preprocessed":
        matrix = finite_array(_field(entry, "R", name, where), name, where, "R")
        check_shape(matrix, (3, 3), name, where, "R")
    else:
        matrix = _official_rotation(data_dir, entry, name, where)
    pose = euler_from_dad_rotation(orthonormalise(matrix, name, where))
    image_bytes, image_format = read_image_file(image_path, name)
    x, y, w, h = bbox
    return Sample(
        name=name,
        image_bytes=image_bytes,
        image_format=image_format,
        pose=pose.astype(np.float32),
        box=stored_float32(np.array([x, y, x + w, y + h]), name, where, "bbox"),
        landmarks=None,
    )
