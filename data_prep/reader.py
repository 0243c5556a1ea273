"""Reads the records of a converted split back, decoded (``hpe_jax.data.records``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from array_record.python.array_record_module import ArrayRecordReader

from hpe_jax.data.layout import shard_paths
from hpe_jax.data.records import decode_record

READ_BATCH = 64


def read_records(
    output_dir: str | Path, split: str, *, with_image: bool = True
) -> Iterator[dict[str, Any]]:
    """Iterates the decoded records of a finished split, shard by shard, in written order.

    Each record is a dict (see ``hpe_jax.data.records.decode_record``) with ``name``, ``pose``
    (3,) float32 (yaw, pitch, roll) degrees, ``rotation`` (3, 3), ``box`` (4,) float32 tight
    (x_min, y_min, x_max, y_max) pixels or None, ``landmarks`` or None, and, when
    ``with_image``, ``image`` (H, W, 3) uint8 RGB.
    """
    for path in shard_paths(output_dir, split):
        reader = ArrayRecordReader(path)
        try:
            total = reader.num_records()
            for start in range(0, total, READ_BATCH):
                for raw in reader.read(start, min(total, start + READ_BATCH)):
                    yield decode_record(raw, with_image=with_image)
        finally:
            reader.close()
