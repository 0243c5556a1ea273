"""Reads the records of a converted split back, decoded (``hpe_jax.data.source``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from hpe_jax.data.source import decode_image, record, split_source

_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG": "png"}


def image_format(image_bytes: bytes) -> str:
    """``jpeg`` or ``png`` from an encoded image's first bytes, else ``unknown``."""
    return next((fmt for magic, fmt in _MAGIC.items() if image_bytes.startswith(magic)), "unknown")


def read_records(
    output_dir: str | os.PathLike[str], split: str, *, with_image: bool = True
) -> Iterator[dict[str, Any]]:
    """Iterates the records of a converted split in written order.

    ``output_dir`` names the TFDS dataset as ``hpe_jax.data.source`` says (its version folder,
    its dataset folder, or a data dir holding only it). Each record is a dict with ``name``,
    ``pose`` (3,) float32 (yaw, pitch, roll) degrees, ``rotation`` (3, 3) float32, ``box``
    (4,) float32 tight (x_min, y_min, x_max, y_max) pixels or None, ``landmarks`` (R, K)
    float32 or None, ``image_bytes`` and ``image_format`` (``jpeg`` / ``png``), and, when
    ``with_image``, ``image`` (H, W, 3) uint8 RGB.
    """
    source = split_source(output_dir, split)
    for index in range(len(source)):
        rec = record(source[index])
        rec["image_format"] = image_format(rec["image_bytes"])
        if with_image:
            rec["image"] = decode_image(rec["image_bytes"])
        yield rec
