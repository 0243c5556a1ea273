"""``draw_pose``: a face's box, head axes (and optionally a cube) and angles drawn on an image.

The axes are the head's model axes (DATA.md; ``data_prep.synthetic_heads`` renders with the same
projection): x toward the subject's left, y up, z out of the face, turned by ``R.T`` with
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (``hpe_jax.pose.rotation_from_euler``) and projected
orthographically onto the image (u right, v down). Drawn in the common style of HopeNet /
6DRepNet: x red, y green drawn downward (toward the chin), z blue (where the nose points), from
the centre of the face box, each as long as half the box's width. So +yaw sends the blue axis to
image-left, +pitch upward. Images are (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import itertools
from typing import Any

import cv2
import numpy as np

from hpe_jax.pose import rotation_from_euler

AXIS_COLOURS = ((255, 0, 0), (0, 200, 0), (0, 90, 255))  # RGB: x red, y green, z blue
BOX_COLOUR = (255, 255, 255)
CUBE_COLOUR = (255, 200, 0)
# The y axis is drawn toward the chin: model direction -y.
_AXES = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])


def project(angles, vectors) -> np.ndarray:
    """Image-plane offsets of model-space vectors for a head at ``angles``.

    Args:
      angles: (3,) degrees (yaw, pitch, roll).
      vectors: (N, 3) model-space vectors (x subject's left, y up, z out of the face).

    Returns:
      (N, 2) float64 offsets (du right, dv down) per model unit.
    """
    turned = np.asarray(vectors, np.float64) @ rotation_from_euler(np.asarray(angles, np.float64))
    return np.stack([turned[:, 0], -turned[:, 1]], axis=1)


def _face_fields(face: Any) -> tuple[np.ndarray, np.ndarray]:
    get = face.get if isinstance(face, dict) else lambda k: getattr(face, k)
    box = np.asarray(get("box"), np.float64)
    return box, np.array([get("yaw"), get("pitch"), get("roll")], np.float64)


def _point(p: np.ndarray) -> tuple[int, int]:
    return round(float(p[0])), round(float(p[1]))


def draw_pose(
    image: np.ndarray, face: Any, *, cube: bool = False, label: bool = True
) -> np.ndarray:
    """A copy of ``image`` with ``face`` drawn: its box, the three head axes from the box centre
    (x red, y green toward the chin, z blue where the nose points), optionally a cube turned with
    the head, and the angles as text above the box.

    Args:
      image: (H, W, 3) uint8 RGB.
      face: a ``hpe_jax.predictor.Face`` or a dict with ``box`` (x_min, y_min, x_max, y_max)
        pixels and ``yaw``, ``pitch``, ``roll`` degrees.
      cube: also draw a cube of the box's width centred on the face.
      label: write "yaw .. pitch .. roll .." above the box.

    Returns:
      (H, W, 3) uint8 RGB, a new array.
    """
    out = np.ascontiguousarray(np.array(image, dtype=np.uint8, copy=True))
    box, angles = _face_fields(face)
    width = box[2] - box[0]
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    thickness = max(1, round(float(width) / 60))
    cv2.rectangle(out, _point(box[:2]), _point(box[2:]), BOX_COLOUR, thickness, cv2.LINE_AA)
    if cube:
        corners = np.array(list(itertools.product((-0.5, 0.5), repeat=3)))
        points = centre + width * project(angles, corners)
        for i, j in itertools.combinations(range(8), 2):
            if np.sum(corners[i] != corners[j]) == 1:
                cv2.line(
                    out, _point(points[i]), _point(points[j]), CUBE_COLOUR, thickness, cv2.LINE_AA
                )
    ends = centre + 0.5 * width * project(angles, _AXES)
    for end, colour in zip(ends, AXIS_COLOURS, strict=True):
        cv2.line(out, _point(centre), _point(end), colour, thickness + 1, cv2.LINE_AA)
    if label:
        text = f"yaw {angles[0]:.0f} pitch {angles[1]:.0f} roll {angles[2]:.0f}"
        scale = max(0.35, width / 400)
        origin = (int(box[0]), max(int(box[1]) - 6, 12))
        cv2.putText(
            out,
            text,
            origin,
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            thickness + 2,
            cv2.LINE_AA,
        )
        cv2.putText(
            out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, BOX_COLOUR, thickness, cv2.LINE_AA
        )
    return out
