"""Converts a head-pose dataset into ArrayRecord shards of the shared record schema.

``python -m data_prep --dataset {300w_lp,aflw2000,biwi,dad} --data_dir DIR --output_dir OUT``
writes ``OUT/<split>.array_record-NNNNN-of-MMMMM`` and ``OUT/<split>.json`` (see ``layout``;
records: ``hpe_jax.data.records``). Per record: the image (source bytes when the source is a
JPEG / PNG file, else lossless PNG), pose (yaw, pitch, roll) float32 degrees, the rotation
matrix, the tight face box or none, landmarks when present, and the source's relative name.

The stored ``rotation`` of every dataset is ``hpe_jax.pose.rotation_from_euler`` of the stored
pose, i.e. ``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (the 300W-LP convention), so all datasets share
one convention; for DAD that is the rotation of the final (original-formula) angles, not the
source matrix.

Samples are loaded and checked in ``--workers`` processes; records are written in source
order, item ``i`` of ``N`` to shard ``i * M // N``. A bad sample stops the run
(``--on_error fail``, error naming the file and problem) or is skipped, counted and listed in
the metadata (``skip``). Samples outside the angle filter (``--max_abs_angle``, by default 99
for aflw2000 and dad, none for the others) are dropped, counted and listed.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from data_prep.common import ConversionError, Sample
from data_prep.datasets import READERS, Failure, load_chunk, reader
from data_prep.writer import WRITER_OPTIONS, ShardSetWriter
from hpe_jax.data.layout import check_split, stale_temporaries
from hpe_jax.data.records import SCHEMA_VERSION, encode_record
from hpe_jax.pose import ANGLE_NAMES, rotation_from_euler

DEFAULT_MAX_ABS_ANGLE: dict[str, float | None] = {
    "300w_lp": None,
    "aflw2000": 99.0,
    "biwi": None,
    "dad": 99.0,
}
RECORDS_PER_AUTO_SHARD = 10_000
MAX_CHUNK = 64

log = logging.getLogger(__name__)


def _chunks(items: Sequence[Any], workers: int) -> list[Sequence[Any]]:
    size = max(1, min(MAX_CHUNK, len(items) // (8 * workers)))
    return [items[i : i + size] for i in range(0, len(items), size)]


def load_samples(
    dataset: str, data_dir: Path, items: Sequence[Any], workers: int
) -> Iterator[Sample | Failure]:
    """Loaded samples (or Failures) of ``items``, in order, from ``workers`` processes.

    With one worker everything runs in this process. Otherwise chunks of items go to a
    ``spawn`` process pool with a bounded number in flight, so memory stays bounded.
    """
    chunks = _chunks(items, workers)
    if workers == 1:
        for chunk in chunks:
            yield from load_chunk(dataset, data_dir, list(chunk))
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        todo = iter(chunks)
        pending: deque[Future[list[Sample | Failure]]] = deque()
        for chunk in todo:
            pending.append(pool.submit(load_chunk, dataset, data_dir, list(chunk)))
            if len(pending) >= 4 * workers:
                break
        while pending:
            done = pending.popleft().result()
            chunk = next(todo, None)
            if chunk is not None:
                pending.append(pool.submit(load_chunk, dataset, data_dir, list(chunk)))
            yield from done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def encode_sample(dataset: str, sample: Sample) -> bytes:
    """The record of a sample; its rotation is ``rotation_from_euler`` of its float32 pose."""
    return encode_record(
        dataset=dataset,
        name=sample.name,
        image_bytes=sample.image_bytes,
        image_format=sample.image_format,
        pose=sample.pose,
        rotation=rotation_from_euler(sample.pose.astype(np.float64)),
        box=sample.box,
        landmarks=sample.landmarks,
    )


def _angle_ranges(poses: list[np.ndarray]) -> dict[str, list[float]] | None:
    if not poses:
        return None
    arr = np.stack(poses)
    return {
        name: [float(arr[:, i].min()), float(arr[:, i].max())] for i, name in enumerate(ANGLE_NAMES)
    }


def convert(
    dataset: str,
    data_dir: str | Path,
    output_dir: str | Path,
    *,
    filename_list: str | Path | None = None,
    split: str = "train",
    num_shards: int | None = None,
    workers: int = 1,
    on_error: Literal["fail", "skip"] = "fail",
    max_abs_angle: float | Literal["auto"] | None = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Converts one split of ``dataset`` from ``data_dir`` into shards in ``output_dir``.

    Args:
      dataset: ``300w_lp``, ``aflw2000``, ``biwi`` or ``dad``.
      filename_list: the original's list file (relative names without extension, or npz
        indices; for dad the annotation json). None: scan ``data_dir``.
      num_shards: shard count; None: one per started 10,000 samples.
      workers: processes loading and checking samples.
      on_error: ``fail`` stops at the first bad sample; ``skip`` skips, counts and lists it.
      max_abs_angle: drop samples with any |yaw|, |pitch| or |roll| above this (degrees);
        None keeps all; ``auto``: 99 for aflw2000 and dad, None for the others.
      progress: show a tqdm progress bar (records/s) on stderr.

    Returns:
      The metadata written to ``OUT/<split>.json``.

    Raises:
      ConversionError: unusable input, or a bad sample with ``on_error='fail'``.
    """
    module = reader(dataset)
    check_split(split)
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if num_shards is not None and num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    limit = DEFAULT_MAX_ABS_ANGLE[dataset] if max_abs_angle == "auto" else max_abs_angle
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise ConversionError(f"{data_dir}: data dir not found")
    list_path = None if filename_list is None else Path(filename_list).resolve()
    items = module.list_items(data_dir, list_path, split)
    if not items:
        raise ConversionError(f"{data_dir}: nothing to convert")
    if num_shards is None:
        num_shards = math.ceil(len(items) / RECORDS_PER_AUTO_SHARD)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporaries(output_dir, split):
        log.warning("removing %s, left by an interrupted conversion", stale)
        stale.unlink()

    skipped: list[dict[str, str]] = []
    filtered: list[dict[str, str]] = []
    poses: list[np.ndarray] = []
    bar = tqdm(total=len(items), unit="rec", desc=f"{dataset}/{split}", disable=not progress)
    outcomes = load_samples(dataset, data_dir, items, workers)
    with bar, closing(outcomes), ShardSetWriter(output_dir, split, num_shards) as writer:
        for position, outcome in enumerate(outcomes):
            bar.update()
            if isinstance(outcome, Failure):
                if on_error == "fail":
                    raise ConversionError(f"{outcome.path}: {outcome.problem}")
                skipped.append(
                    {"name": outcome.name, "path": outcome.path, "reason": outcome.problem}
                )
                continue
            pose = outcome.pose
            if limit is not None and np.any(np.abs(pose) > limit):
                angles = ", ".join(f"{n} {a:.2f}" for n, a in zip(ANGLE_NAMES, pose, strict=True))
                filtered.append({"name": outcome.name, "reason": f"|angle| > {limit:g} ({angles})"})
                continue
            writer.write(position * num_shards // len(items), encode_sample(dataset, outcome))
            poses.append(pose)
        metadata = {
            "schema_version": SCHEMA_VERSION,
            "dataset": dataset,
            "split": split,
            "source_dir": str(data_dir),
            "filename_list": None if list_path is None else str(list_path),
            "shards": writer.names,
            "records_per_shard": writer.counts,
            "writer_options": WRITER_OPTIONS,
            "rotation": "rotation_from_euler(pose) = Rz(roll) @ Ry(yaw) @ Rx(pitch), row-major",
            "max_abs_angle": limit,
            "on_error": on_error,
            "num_filtered": len(filtered),
            "filtered": filtered,
            "num_skipped": len(skipped),
            "skipped": skipped,
            "angle_ranges": _angle_ranges(poses),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return writer.commit(metadata)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m data_prep``."""
    p = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Convert a head-pose dataset into ArrayRecord shards (hpe_jax record schema).",
    )
    p.add_argument("--dataset", required=True, choices=sorted(READERS))
    p.add_argument("--data_dir", required=True, type=Path, help="the dataset's root folder")
    p.add_argument("--output_dir", required=True, type=Path)
    p.add_argument(
        "--filename_list",
        type=Path,
        help="the original's list file (relative names without extension, or npz indices; for "
        "dad the annotation json; for biwi also one aggregated .npz); default: scan DATA_DIR "
        "(dad: DATA_DIR/<split>.json)",
    )
    p.add_argument("--split", default="train", help="output split name (default: train)")
    p.add_argument("--num_shards", type=int, help="default: one per started 10,000 samples")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--on_error", choices=("fail", "skip"), default="fail")
    angle = p.add_mutually_exclusive_group()
    angle.add_argument(
        "--max_abs_angle",
        type=float,
        help="drop samples with any |angle| above this many degrees (default: 99 for aflw2000 "
        "and dad, no filter for 300w_lp and biwi)",
    )
    angle.add_argument("--no_angle_filter", action="store_true", help="keep every sample")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the converter CLI; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.no_angle_filter:
        max_abs_angle: float | Literal["auto"] | None = None
    else:
        max_abs_angle = "auto" if args.max_abs_angle is None else args.max_abs_angle
    try:
        meta = convert(
            args.dataset,
            args.data_dir,
            args.output_dir,
            filename_list=args.filename_list,
            split=args.split,
            num_shards=args.num_shards,
            workers=args.workers,
            on_error=args.on_error,
            max_abs_angle=max_abs_angle,
            progress=not args.no_progress,
        )
    except (ConversionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"{meta['dataset']}/{meta['split']}: wrote {meta['num_records']} records in "
        f"{meta['num_shards']} shard(s) to {args.output_dir}; filtered {meta['num_filtered']} "
        f"(max |angle| {meta['max_abs_angle']}), skipped {meta['num_skipped']} bad sample(s)"
    )
    return 0
