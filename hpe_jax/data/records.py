"""The one record schema of hpe-jax ArrayRecord shards, shared by every dataset.

Each record is a msgpack map (schema version 1):

- ``schema_version`` int: ``SCHEMA_VERSION``.
- ``dataset`` str: ``300w_lp``, ``aflw2000``, ``biwi``, ``dad``, ...
- ``name`` str: the source's relative name (no extension).
- ``image`` bytes: the encoded image; the source bytes when the source is a JPEG/PNG file, else
  a lossless PNG.
- ``image_format`` str: ``jpeg`` or ``png``.
- ``pose`` 3 floats: (yaw, pitch, roll) in degrees.
- ``rotation`` 9 floats: row-major 3x3 rotation matrix, 300W-LP convention.
- ``box`` 4 floats or nil: tight face box (x_min, y_min, x_max, y_max) in pixels.
- ``landmarks`` {shape: [r, k], data: bytes} or nil: float32 landmarks, row 0 = x, row 1 = y
  (row 2 = z when present).
"""

from __future__ import annotations

import io
from typing import Any

import msgpack
import numpy as np
from PIL import Image

SCHEMA_VERSION = 1
IMAGE_FORMATS = ("jpeg", "png")


def encode_record(
    *,
    dataset: str,
    name: str,
    image_bytes: bytes,
    image_format: str,
    pose: np.ndarray,
    rotation: np.ndarray,
    box: np.ndarray | None,
    landmarks: np.ndarray | None,
) -> bytes:
    """Serialises one sample into the schema above.

    Args:
      pose: (3,) (yaw, pitch, roll) in degrees.
      rotation: (3, 3) rotation matrix.
      box: (4,) tight box (x_min, y_min, x_max, y_max) in pixels, or None.
      landmarks: (R, K) float landmarks (R = 2 or 3), or None.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    pose = np.asarray(pose, np.float64).reshape(-1)
    rotation = np.asarray(rotation, np.float64)
    if pose.shape != (3,) or rotation.shape != (3, 3):
        raise ValueError(
            f"{name}: pose must be (3,), rotation (3, 3); got {pose.shape}, {rotation.shape}"
        )
    if box is not None:
        box = np.asarray(box, np.float64).reshape(-1)
        if box.shape != (4,):
            raise ValueError(f"{name}: box must have 4 values, got shape {box.shape}")
    lm = None
    if landmarks is not None:
        arr = np.ascontiguousarray(landmarks, dtype="<f4")
        if arr.ndim != 2:
            raise ValueError(f"{name}: landmarks must be 2-D (rows, points), got {arr.shape}")
        lm = {"shape": list(arr.shape), "data": arr.tobytes()}
    record = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "name": name,
        "image": bytes(image_bytes),
        "image_format": image_format,
        "pose": pose.tolist(),
        "rotation": rotation.reshape(-1).tolist(),
        "box": None if box is None else box.tolist(),
        "landmarks": lm,
    }
    return msgpack.packb(record, use_bin_type=True)


def decode_image(image_bytes: bytes) -> np.ndarray:
    """Decodes encoded image bytes to an (H, W, 3) uint8 RGB array."""
    with Image.open(io.BytesIO(image_bytes)) as img:
        return np.asarray(img.convert("RGB"))


def decode_record(raw: bytes, *, with_image: bool = True) -> dict[str, Any]:
    """Decodes one serialised record.

    Returns a dict with ``dataset``, ``name``, ``pose`` (3,) float32 degrees (yaw, pitch, roll),
    ``rotation`` (3, 3) float32, ``box`` (4,) float32 or None, ``landmarks`` (R, K) float32 or
    None, ``image_bytes`` and ``image_format``, and, when ``with_image``, ``image`` (H, W, 3)
    uint8 RGB.
    """
    rec = msgpack.unpackb(raw, raw=False)
    version = rec.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"record schema version {version!r} is not the supported {SCHEMA_VERSION}")
    lm = rec["landmarks"]
    out: dict[str, Any] = {
        "dataset": rec["dataset"],
        "name": rec["name"],
        "pose": np.asarray(rec["pose"], np.float32),
        "rotation": np.asarray(rec["rotation"], np.float32).reshape(3, 3),
        "box": None if rec["box"] is None else np.asarray(rec["box"], np.float32),
        "landmarks": None
        if lm is None
        else np.frombuffer(lm["data"], "<f4").reshape(lm["shape"]).astype(np.float32),
        "image_bytes": rec["image"],
        "image_format": rec["image_format"],
    }
    if with_image:
        out["image"] = decode_image(rec["image"])
    return out
