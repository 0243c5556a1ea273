"""Synthetic head-pose datasets written in the real on-disk formats of the four datasets.

``python -m data_prep.synthetic --format {300w_lp,aflw2000,biwi,dad} --num N --out DIR --seed S``
writes into a hidden folder of DIR, then moves the files in; it refuses, moving nothing, when DIR
already holds any of them (other formats' files, or another DAD split, may share DIR).

Each sample is a random head rendered by ``data_prep.synthetic_heads.render_head`` at a random
known pose, size, position and light; this module draws the poses and framings and writes the
files. Poses are (yaw, pitch, roll) degrees in the 300W-LP convention: with
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (``hpe_jax.pose.rotation_from_euler``) the image shows the
head turned by ``R.T`` (the projection is in ``data_prep.synthetic_heads``).

What each format gets (``--image_size`` defaults in ``DEFAULT_IMAGE_SIZE``):

* ``300w_lp``: ``AFW``, ``HELEN``, ``IBUG``, ``LFPW`` and their ``_Flip`` twins; ``NAME.jpg`` (RGB)
  + ``NAME.mat`` (scipy.io.savemat, MATLAB 5) with the real keys, shapes and dtypes:
  ``Pose_Para`` (1, 7) float32 [pitch, yaw, roll (radians), tx, ty, tz, scale], ``pt2d`` (2, 68)
  float64, ``Shape_Para`` (199, 1), ``Exp_Para`` (29, 1), ``Tex_Para`` (199, 1), ``Illum_Para``
  (1, 10) float64, ``Color_Para`` (1, 7) float32, ``roi`` (1, 4) int16. Samples come in pairs: the
  odd one is the ``_Flip`` twin of the even one (same file name, mirrored image and landmarks,
  yaw and roll negated), unless ``flip_twins=False``. List ``300wlp_list.txt``
  (``./LFPW_Flip/LFPW_image_train_0001_3`` style). Record name: ``FOLDER/NAME``.
* ``aflw2000``: ``imageNNNNN.jpg`` + ``.mat`` with the 300W-LP keys plus ``pt3d_68`` (3, 68)
  float32 (x, y pixels, z depth toward the camera) and ``pt2d`` (2, 21): 21 AFLW points, the
  hidden or off-image ones stored as (-1, H + 2) as in the real files. ``aflw2000_list.txt``
  (``./image00002`` lines) lists only the samples with every |angle| <= 99, as the original's
  list does; the others (every 64th sample, index % 64 == 5: 1.6 %, like the real 31 of 2000)
  are written too, with pitch or roll beyond 99, so that a reader's filter is exercised. Like
  some real files (image00516), every 16th (index % 16 == 6) stores an all-zero ``Exp_Para``
  as uint8.
* ``biwi``: ``layout="per_image"`` (default): ``0.npz``, ``1.npz``, ... with ``image`` (S, S, 3)
  uint8 BGR and ``pose`` (3,) float32 (yaw, pitch, roll) degrees, plus ``biwi_list.txt``,
  ``biwi_train_list.txt`` (first 70 %) and ``biwi_test_list.txt``; record name ``"0"`` ...
  ``layout="split_npz"`` (FSA-Net preparation): ``BIWI_train.npz`` (first 70 %) and
  ``BIWI_test.npz`` with ``image`` (N, S, S, 3) uint8 BGR, ``pose`` (N, 3) float64 and
  ``img_size`` = S; record names ``BIWI_train[i]``. The real per-image ``pose`` dtype is not
  documented; float32 is a choice.
* ``dad``: ``layout="both"`` (default), ``"preprocessed"`` or ``"official"``, ``split="train"``.
  Images ``SPLIT/images/<item_id>.png`` (RGB PNG, as the release). Preprocessed (the original HPE
  code's input): ``SPLIT.json`` = list of {``img_path`` ("SPLIT/images/<id>.png", relative to
  the output folder), ``bbox`` [x, y, w, h], ``R`` 3x3}. Official release: ``SPLIT/SPLIT.json`` =
  list of {``item_id``, ``annotation_path`` ("annotations/<id>.json"), ``img_path``
  ("images/<id>.png"), ``bbox``, ``attributes``} (both paths relative to the split folder) and
  ``SPLIT/annotations/<item_id>.json`` with ``vertices``, ``model_view_matrix`` and
  ``projection_matrix``. ``vertices`` holds the 68 model-space landmark points (68, 3), not the
  5023 FLAME vertices, to keep files small; as in the release, ``projection_matrix @
  model_view_matrix @ [v, 1]`` gives pixel x and (H - pixel y) (orthographic here: w = 1).
  ``model_view_matrix[:3, :3] = R.T`` (the rotation the image shows, in OpenGL camera axes:
  x right, y up, z toward the viewer), so ``R_json = diag(1, -1, -1) @ R.T`` and DATA.md's
  conversion (``Rotation.from_matrix(R_json.T).as_euler('xyz')``, pitch = a[0] - 180 wrapped)
  returns exactly the (yaw, pitch, roll) drawn: the two conventions agree on what a pose looks
  like. bbox = the integer box around the 68 projected landmarks. Every 64th sample has pitch or
  roll beyond 99. Record names (img_path without extension): ``SPLIT/images/<item_id>`` when
  converting the preprocessed json from the output folder, ``images/<item_id>`` when converting
  the official json from the split folder.

Pose ranges (degrees, uniform; override with ``yaw_range=(lo, hi)`` etc.): 300W-LP, AFLW2000 and
DAD yaw [-90, 90], pitch and roll [-60, 60]; BIWI yaw [-75, 75], pitch [-60, 60], roll [-50, 50].
Near |yaw| = 90, pitch and roll trade against each other (Euler gimbal lock), as in real data.

Each sample's randomness comes from ``numpy.random.default_rng([seed, format_index, index])``:
a given seed always gives the same files, a sample does not depend on how many others are made,
and two formats made with the same seed (e.g. a 300W-LP training set and an AFLW2000 test set)
share no head.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

from data_prep.synthetic_heads import Rendered, render_head
from hpe_jax.cli import run_cli
from hpe_jax.errors import UserError
from hpe_jax.pose import rotation_from_euler

FORMATS = ("300w_lp", "aflw2000", "biwi", "dad")
DEFAULT_IMAGE_SIZE = {"300w_lp": 450, "aflw2000": 450, "biwi": 224, "dad": 256}
BIWI_SPLIT_NPZ_SIZE = 64
BIWI_LAYOUTS = ("per_image", "split_npz")
DAD_LAYOUTS = ("both", "preprocessed", "official")
W300LP_FOLDERS = ("AFW", "HELEN", "IBUG", "LFPW")
DEFAULT_RANGES = {
    "300w_lp": ((-90.0, 90.0), (-60.0, 60.0), (-60.0, 60.0)),
    "aflw2000": ((-90.0, 90.0), (-60.0, 60.0), (-60.0, 60.0)),
    "biwi": ((-75.0, 75.0), (-60.0, 60.0), (-50.0, 50.0)),
    "dad": ((-90.0, 90.0), (-60.0, 60.0), (-60.0, 60.0)),
}
_RANGE_OPTIONS = {"yaw_range", "pitch_range", "roll_range"}
_OPTIONS = {
    "300w_lp": _RANGE_OPTIONS | {"jpeg_quality", "flip_twins"},
    "aflw2000": _RANGE_OPTIONS | {"jpeg_quality"},
    "biwi": _RANGE_OPTIONS | {"layout"},
    "dad": _RANGE_OPTIONS | {"layout", "split"},
}
ZERO_EXP_PERIOD = 16
ZERO_EXP_PHASE = 6
BEYOND_99_PERIOD = 64
BEYOND_99_PHASE = 5
BEYOND_99_RANGE = (100.0, 130.0)
TRAIN_FRACTION = 0.7
MAT_HEADER = b"MATLAB 5.0 MAT-file, written by hpe-jax data_prep.synthetic"
MAT_HEADER_TEXT_BYTES = 116
GL_FLIP = np.diag([1.0, -1.0, -1.0])

# AFLW 21 points: brows (6), eyes (corner, centre, corner) x 2, image-left ear, nose (3),
# image-right ear, mouth (3), chin. Indices >= 68 are extra model points (``Rendered.points``).
_AFLW21 = (17, 19, 21, 22, 24, 26, 36, 68, 39, 42, 69, 45, 70, 31, 30, 35, 71, 48, 72, 54, 8)


def _sample_pose(rng: np.random.Generator, ranges, beyond_99: bool) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees, uniform in ``ranges``; if ``beyond_99`` pitch or roll is
    replaced by a value with magnitude in ``BEYOND_99_RANGE``."""
    pose = [float(rng.uniform(lo, hi)) for lo, hi in ranges]
    if beyond_99:
        pose[1 + int(rng.integers(2))] = float(rng.choice([-1, 1]) * rng.uniform(*BEYOND_99_RANGE))
    return pose[0], pose[1], pose[2]


def _placement(rng: np.random.Generator, size: int, fmt: str) -> tuple[float, tuple[float, float]]:
    """(scale, (cx, cy)) in pixels for a format's typical framing."""
    if fmt == "biwi":
        scale = rng.uniform(0.27, 0.33) * size
        centre = (rng.uniform(0.46, 0.54) * size, rng.uniform(0.44, 0.52) * size)
    elif fmt == "dad":
        scale = rng.uniform(0.16, 0.3) * size
        margin = 1.3 * scale / size
        centre = tuple(rng.uniform(margin, 1.0 - margin, 2) * size)
    else:
        scale = rng.uniform(0.24, 0.34) * size
        centre = (rng.uniform(0.46, 0.54) * size, rng.uniform(0.47, 0.55) * size)
    return scale, (float(centre[0]), float(centre[1]))


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _mat_common(rng: np.random.Generator, radians: np.ndarray, view_t, pt2d) -> dict[str, Any]:
    """The 3DMM keys of a 300W-LP / AFLW2000 .mat with the real shapes and dtypes."""
    scale, cx, cy, size = view_t
    box_min, box_max = pt2d.min(1), pt2d.max(1)
    half = 1.3 * (box_max - box_min).max()
    mid = (box_min + box_max) / 2
    roi = np.round(np.concatenate([mid - half, mid + half])).astype(np.int16)[None]
    return {
        "Pose_Para": np.array([[*radians, cx, size - cy, 0.0, scale]], np.float32),
        "Shape_Para": rng.normal(0.0, 2e5, (199, 1)),
        "Exp_Para": rng.normal(0.0, 0.5, (29, 1)),
        "Tex_Para": rng.normal(0.0, 50.0, (199, 1)),
        "Color_Para": np.array(
            [[*rng.uniform(0.6, 1.3, 3), *rng.uniform(-0.3, 0.3, 3), 1.0]], np.float32
        ),
        "Illum_Para": np.array([[*rng.uniform(0.6, 1.2, 6), *rng.uniform(-2.0, 2.0, 3), 20.0]]),
        "roi": roi,
    }


def _savemat(path: Path, mat: dict[str, Any]) -> None:
    """scipy.io.savemat with a fixed header text (scipy's carries the time: not reproducible)."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, mat)
    data = bytearray(buf.getvalue())
    data[:MAT_HEADER_TEXT_BYTES] = MAT_HEADER.ljust(MAT_HEADER_TEXT_BYTES)
    path.write_bytes(bytes(data))


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _mat_pose(pose: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, ...]]:
    """(float32 radians [pitch, yaw, roll], the (yaw, pitch, roll) degrees they encode)."""
    yaw, pitch, roll = pose
    radians = np.radians(np.array([pitch, yaw, roll])).astype(np.float32)
    deg = np.degrees(radians.astype(np.float64))
    return radians, _floats(deg[[1, 0, 2]])


def _as_mat_stores(pose: tuple[float, ...]) -> tuple[float, ...]:
    """The pose a .mat's float32 radians store."""
    return _mat_pose(pose)[1]


@dataclass(frozen=True)
class _Job:
    """What a format writer needs for sample ``index``."""

    index: int
    rng: np.random.Generator
    size: int
    out: Path


@dataclass(frozen=True)
class _Drawn:
    """A rendered sample: pose (yaw, pitch, roll) degrees as stored, framing, rendering."""

    pose: tuple[float, ...]
    scale: float
    centre: tuple[float, float]
    rendered: Rendered


def _draw(job: _Job, fmt: str, ranges, beyond_99: bool, stored: Callable) -> _Drawn:
    """Draws a pose, rounds it to what the format stores (``stored``), and renders it."""
    pose = stored(_sample_pose(job.rng, ranges, beyond_99))
    scale, centre = _placement(job.rng, job.size, fmt)
    return _Drawn(pose, scale, centre, render_head(job.rng, pose, job.size, scale, centre))


def _w300lp_names(base: int) -> tuple[str, str]:
    """(folder, file name) of 300W-LP base sample ``base``, in the real naming styles."""
    folder = W300LP_FOLDERS[base % 4]
    m = base // 4
    image, view = m // 6, m % 6
    name = {
        "AFW": f"AFW_{1051618982 + 7 * image}_1_{view}",
        "HELEN": f"HELEN_{100032540 + 13 * image}_1_{view}",
        "IBUG": f"IBUG_image_{image:03d}_1_{view}",
        "LFPW": f"LFPW_image_train_{image:04d}_{view}",
    }[folder]
    return folder, name


def _write_300w_lp(jobs: list[_Job], ranges, flip_twins: bool, quality: int) -> list[dict]:
    out = []
    drawn = None
    for job in jobs:
        flip = flip_twins and job.index % 2 == 1
        folder, name = _w300lp_names(job.index // 2 if flip_twins else job.index)
        if flip and drawn is not None:
            folder += "_Flip"
            image = np.ascontiguousarray(drawn.rendered.image[:, ::-1])
            pt2d = drawn.rendered.points[:68, :2].T.copy()
            pt2d[0] = job.size - pt2d[0]
            yaw, pitch, roll = drawn.pose
            radians, pose = _mat_pose((-yaw, pitch, -roll))
            centre = (job.size - drawn.centre[0], drawn.centre[1])
        else:
            drawn = _draw(job, "300w_lp", ranges, False, _as_mat_stores)
            image, pt2d = drawn.rendered.image, drawn.rendered.points[:68, :2].T.copy()
            radians, pose = _mat_pose(drawn.pose)
            centre = drawn.centre
        mat = _mat_common(job.rng, radians, (drawn.scale, *centre, job.size), pt2d)
        mat["pt2d"] = pt2d
        (job.out / folder).mkdir(parents=True, exist_ok=True)
        (job.out / folder / f"{name}.jpg").write_bytes(_jpeg(image, quality))
        _savemat(job.out / folder / f"{name}.mat", mat)
        box = _floats([*pt2d.min(1), *pt2d.max(1)])
        out.append(
            {"name": f"{folder}/{name}", "pose": pose, "box": box, "file": f"{folder}/{name}.jpg"}
        )
    lines = [f"./{s['name']}" for s in out]
    (jobs[0].out / "300wlp_list.txt").write_text("\n".join(lines) + "\n")
    return out


def _aflw_number(index: int) -> int:
    """Increasing, gapped image numbers like the real ``image00002``, ``image00004``, ..."""
    return 2 + 2 * index + index % 2


def _beyond_99(index: int) -> bool:
    return index % BEYOND_99_PERIOD == BEYOND_99_PHASE


def _kept(pose: tuple[float, ...]) -> bool:
    return all(abs(a) <= 99.0 for a in pose)


def _write_aflw2000(jobs: list[_Job], ranges, quality: int) -> list[dict]:
    out = []
    for job in jobs:
        drawn = _draw(job, "aflw2000", ranges, _beyond_99(job.index), _as_mat_stores)
        r = drawn.rendered
        radians, pose = _mat_pose(drawn.pose)
        pt3d = r.points[:68].T.astype(np.float32)
        pt2d = r.points[list(_AFLW21), :2].T.copy()
        hidden = ~r.visible[list(_AFLW21)]
        pt2d[0, hidden], pt2d[1, hidden] = -1.0, job.size + 2.0
        view = (drawn.scale, *drawn.centre, job.size)
        mat = _mat_common(job.rng, radians, view, r.points[:68, :2].T)
        mat.update(pt2d=pt2d, pt3d_68=pt3d)
        if job.index % ZERO_EXP_PERIOD == ZERO_EXP_PHASE:
            mat["Exp_Para"] = np.zeros((29, 1), np.uint8)
        name = f"image{_aflw_number(job.index):05d}"
        (job.out / f"{name}.jpg").write_bytes(_jpeg(r.image, quality))
        _savemat(job.out / f"{name}.mat", mat)
        box = _floats([*pt3d[:2].min(1), *pt3d[:2].max(1)])
        out.append(
            {"name": name, "pose": pose, "box": box, "file": f"{name}.jpg", "kept": _kept(pose)}
        )
    lines = [f"./{s['name']}" for s in out if s["kept"]]
    (jobs[0].out / "aflw2000_list.txt").write_text("".join(f"{n}\n" for n in lines))
    return out


def _write_biwi(jobs: list[_Job], ranges, layout: str) -> list[dict]:
    if layout not in BIWI_LAYOUTS:
        raise UserError(f"biwi layout must be one of {BIWI_LAYOUTS}, got {layout!r}")
    n_train = round(TRAIN_FRACTION * len(jobs))
    dtype = np.float32 if layout == "per_image" else np.float64
    images, poses, out = [], [], []
    for job in jobs:
        drawn = _draw(job, "biwi", ranges, False, lambda p: _floats(np.asarray(p, dtype)))
        pose, r = drawn.pose, drawn.rendered
        split = "train" if job.index < n_train else "test"
        bgr = np.ascontiguousarray(r.image[:, :, ::-1])
        if layout == "per_image":
            name = str(job.index)
            np.savez(job.out / f"{name}.npz", image=bgr, pose=np.array(pose, dtype))
        else:
            pos = job.index if split == "train" else job.index - n_train
            name = f"BIWI_{split}[{pos}]"
            images.append(bgr)
            poses.append(pose)
        out.append({"name": name, "pose": pose, "box": None, "split": split})
    root = jobs[0].out
    if layout == "per_image":
        names = [s["name"] for s in out]
        for fname, part in (
            ("biwi_list.txt", names),
            ("biwi_train_list.txt", names[:n_train]),
            ("biwi_test_list.txt", names[n_train:]),
        ):
            (root / fname).write_text("".join(f"{n}\n" for n in part))
    else:
        size = jobs[0].size
        for split, lo, hi in (("train", 0, n_train), ("test", n_train, len(jobs))):
            np.savez(
                root / f"BIWI_{split}.npz",
                image=np.array(images[lo:hi], np.uint8).reshape(hi - lo, size, size, 3),
                pose=np.array(poses[lo:hi], np.float64).reshape(hi - lo, 3),
                img_size=np.array(size),
            )
    return out


def dad_matrices(pose: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """DAD-3DHeads rotations that show a head at ``pose``.

    Args:
      pose: (yaw, pitch, roll) in degrees, 300W-LP convention.

    Returns:
      ``(r_json, model_view_rotation)``, both (3, 3) float64: the preprocessed json's ``R`` and
      the rotation block of ``model_view_matrix``, with
      ``r_json = diag(1, -1, -1) @ model_view_rotation`` and ``model_view_rotation = R.T``
      (``R = rotation_from_euler(pose)``): the inverse of DATA.md's conversion.
    """
    mv = rotation_from_euler(np.asarray(pose, np.float64)).T
    return GL_FLIP @ mv, mv


def _dad_attributes(rng: np.random.Generator, pose) -> dict[str, Any]:
    biggest = float(np.max(np.abs(pose)))
    return {
        "quality": "hq",
        "gender": str(rng.choice(["female", "male", "undefined"])),
        "expression": False,
        "age": str(rng.choice(["child", "young", "middle_aged", "senior"])),
        "occlusions": False,
        "pose": "front" if biggest < 30 else "sided" if biggest <= 90 else "atypical",
        "standard light": bool(rng.random() < 0.7),
    }


def _write_dad(jobs: list[_Job], ranges, layout: str, split: str) -> list[dict]:
    if layout not in DAD_LAYOUTS:
        raise UserError(f"dad layout must be one of {DAD_LAYOUTS}, got {layout!r}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise UserError(f"dad split must be letters, digits, '_' or '-', got {split!r}")
    root = jobs[0].out
    split_dir = root / split
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    if layout != "preprocessed":
        (split_dir / "annotations").mkdir(exist_ok=True)
    pre, official, out = [], [], []
    for job in jobs:
        drawn = _draw(job, "dad", ranges, _beyond_99(job.index), _floats)
        pose, scale, centre, r = drawn.pose, drawn.scale, drawn.centre, drawn.rendered
        item_id = str(uuid.UUID(bytes=job.rng.bytes(16), version=4))
        lm = r.points[:68, :2]
        x0, y0 = np.floor(lm.min(0)).astype(int)
        x1, y1 = np.ceil(lm.max(0)).astype(int)
        bbox = [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]
        (split_dir / "images" / f"{item_id}.png").write_bytes(_png(r.image))
        r_json, mv_rot = dad_matrices(pose)
        pre.append(
            {"img_path": f"{split}/images/{item_id}.png", "bbox": bbox, "R": r_json.tolist()}
        )
        official.append(
            {
                "item_id": item_id,
                "annotation_path": f"annotations/{item_id}.json",
                "img_path": f"images/{item_id}.png",
                "bbox": bbox,
                "attributes": _dad_attributes(job.rng, pose),
            }
        )
        if layout != "preprocessed":
            mv = np.eye(4)
            mv[:3, :3], mv[2, 3] = mv_rot, -10.0
            proj = np.array(
                [
                    [scale, 0, 0, centre[0]],
                    [0, scale, 0, job.size - centre[1]],
                    [0, 0, -1.0, 0],
                    [0, 0, 0, 1.0],
                ]
            )
            annotation = {
                "vertices": r.model_points[:68].tolist(),
                "model_view_matrix": mv.tolist(),
                "projection_matrix": proj.tolist(),
            }
            (split_dir / "annotations" / f"{item_id}.json").write_text(json.dumps(annotation))
        out.append(
            {
                "name": f"{split}/images/{item_id}"
                if layout != "official"
                else f"images/{item_id}",
                "official_name": f"images/{item_id}",
                "item_id": item_id,
                "pose": pose,
                "box": _floats([x0, y0, x1, y1]),
                "file": f"{split}/images/{item_id}.png",
                "kept": _kept(pose),
            }
        )
    if layout != "official":
        (root / f"{split}.json").write_text(json.dumps(pre))
    if layout != "preprocessed":
        (split_dir / f"{split}.json").write_text(json.dumps(official))
    return out


def generate(
    format: str,
    num: int,
    out_dir: str | Path,
    seed: int,
    image_size: int | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Writes ``num`` synthetic samples of ``format`` into ``out_dir`` (module docstring).

    Args:
      format: one of ``FORMATS``.
      num: number of image files (for 300W-LP, flip twins included).
      out_dir: output folder (created).
      seed: random seed; the same seed gives the same files.
      image_size: image side in pixels; default ``DEFAULT_IMAGE_SIZE[format]`` (64 for BIWI's
        ``split_npz`` layout).
      **options: ``yaw_range`` / ``pitch_range`` / ``roll_range`` ((lo, hi) degrees),
        ``jpeg_quality`` (300W-LP, AFLW2000; default 92), ``flip_twins`` (300W-LP; default
        True), ``layout`` (BIWI: ``per_image`` / ``split_npz``; DAD: ``both`` /
        ``preprocessed`` / ``official``), ``split`` (DAD; default ``train``).

    Returns:
      One dict per sample, in writing order: ``name`` (the record name a converter gives it),
      ``pose`` (yaw, pitch, roll) degrees exactly as stored, ``box`` the tight face box
      (x_min, y_min, x_max, y_max) pixels a converter computes (None for BIWI), plus ``file``,
      and ``kept`` (all |angle| <= 99; AFLW2000, DAD) or ``split`` (BIWI); for DAD also
      ``item_id`` and ``official_name`` (the record name from the official layout; ``name`` is
      the preprocessed one unless ``layout="official"``).
    """
    if format not in FORMATS:
        raise UserError(f"format must be one of {FORMATS}, got {format!r}")
    if num < 1:
        raise UserError(f"num must be >= 1, got {num}")
    unknown = sorted(set(options) - _OPTIONS[format])
    if unknown:
        raise UserError(
            f"unknown option(s) for {format}: {unknown}; known: {sorted(_OPTIONS[format])}"
        )
    ranges = tuple(
        tuple(float(a) for a in options.get(f"{name}_range", DEFAULT_RANGES[format][i]))
        for i, name in enumerate(("yaw", "pitch", "roll"))
    )
    layout = options.get("layout")
    if image_size is None:
        split_npz = format == "biwi" and layout == "split_npz"
        image_size = BIWI_SPLIT_NPZ_SIZE if split_npz else DEFAULT_IMAGE_SIZE[format]
    if image_size < 16:
        raise UserError(f"image_size must be >= 16, got {image_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream = FORMATS.index(format)
    jobs = [_Job(i, np.random.default_rng([seed, stream, i]), image_size, out) for i in range(num)]
    quality = int(options.get("jpeg_quality", 92))
    if format == "300w_lp":
        return _write_300w_lp(jobs, ranges, bool(options.get("flip_twins", True)), quality)
    if format == "aflw2000":
        return _write_aflw2000(jobs, ranges, quality)
    if format == "biwi":
        return _write_biwi(jobs, ranges, layout or "per_image")
    return _write_dad(jobs, ranges, layout or "both", str(options.get("split", "train")))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=int, default=None, help="image side in pixels")
    parser.add_argument(
        "--layout",
        default=None,
        help=f"biwi: {'/'.join(BIWI_LAYOUTS)}; dad: {'/'.join(DAD_LAYOUTS)}",
    )
    parser.add_argument("--split", default=None, help="dad: split name (default train)")
    parser.add_argument("--no_flip_twins", action="store_true", help="300w_lp: no _Flip twins")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_cli(lambda: _generate(args), verbose=args.verbose, folder=args.out)


def move_in_without_replacing(stage: Path, out: Path) -> None:
    """Moves the files written into folder ``stage`` to the same places in ``out``; UserError,
    moving nothing, when ``out`` already holds any of them (a second run would replace some
    samples and leave others, mixing two sets)."""
    files = sorted(p.relative_to(stage) for p in stage.rglob("*") if not p.is_dir())
    held = [f for f in files if os.path.lexists(out / f)]
    if held:
        more = f" and {len(held) - 1} more of the {len(files)} files" if len(held) > 1 else ""
        raise UserError(
            f"{out} already holds {held[0]}{more} this would write: not replaced; choose "
            "another --out, or remove those files first"
        )
    for relative in files:
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        os.rename(stage / relative, out / relative)


def _generate(args: argparse.Namespace) -> None:
    """Writes the samples ``args`` asks for and prints what was written."""
    options: dict[str, Any] = {}
    if args.layout is not None:
        options["layout"] = args.layout
    if args.split is not None:
        options["split"] = args.split
    if args.no_flip_twins:
        options["flip_twins"] = False
    out = Path(args.out)
    stage = out / f".synthetic-{args.format}.tmp-{os.getpid()}"
    start = time.perf_counter()
    try:
        samples = generate(args.format, args.num, stage, args.seed, args.image_size, **options)
        move_in_without_replacing(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    seconds = time.perf_counter() - start
    print(
        f"wrote {len(samples)} {args.format} samples to {args.out} in {seconds:.1f} s "
        f"({len(samples) / seconds:.0f} images/s)"
    )


if __name__ == "__main__":
    sys.exit(main())
