"""Converts a head-pose dataset into a TFDS dataset (array_record files), without TensorFlow.

``python -m data_prep --dataset {300w_lp,aflw2000,biwi,dad} --data_dir DIR --output_dir OUT
--split NAME`` writes split NAME of the TFDS dataset ``OUT/<name>/1.0.0`` (``w300lp``,
``aflw2000``, ``biwi``, ``dad3dheads``; with ``--synthetic``, heads from
``python -m data_prep.synthetic`` in that format: ``OUT/synthetic_heads/<format>/1.0.0``).
The features are ``data_prep.builders.base``'s: the image (the source's JPEG / PNG bytes
unchanged; BIWI arrays as lossless PNG), pose (yaw, pitch, roll) float32 degrees, rotation
matrix ``hpe_jax.pose.rotation_from_euler(pose)`` (so every dataset shares the 300W-LP
convention; for DAD that is the rotation of the final, original-formula angles, not the source
matrix), the tight face box and the landmarks where the source has them, the source's relative
name. TFDS reads the result: ``tfds.builder_from_directory(OUT/<name>/1.0.0)``.

Samples are loaded and checked in ``--workers`` processes and written in source order. A bad
sample stops the run (``--on_error fail``, error naming the file and problem) or is skipped,
counted and listed in the dataset's ``metadata.json`` (``skip``). Samples outside the angle
filter (``--max_abs_angle``, by default 99 for aflw2000 and dad, none for the others) and,
unless ``--no_angle_filter``, those the angle bins cannot label (|angle| >= 100) are dropped,
counted and listed. Values are checked as they are stored (float32: a pose finite in float64 but
not in float32 is a bad sample); a filename list (or DAD annotation json) naming a sample twice
is refused, under ``--on_error skip`` too (the list is wrong, not a sample), and so is a
``--num_shards`` above the records to write. The split is prepared in a hidden folder of OUT and
published at once (``data_prep.publish``); a split the dataset already holds is refused unless
``--overwrite`` names it (then that split alone is replaced). Other files in OUT are never
touched; a ``OUT/<name>/1.0.0`` that is not such a dataset, or one with other features or
unreadable metadata, is refused before any work. One conversion at a time writes into OUT
(``hpe_jax.folder_lock``: a second live one is refused with its pid; the hidden folders of a
killed one are removed, with a warning naming them). A failed write (a full disk, a read-only
folder) is reported as one line naming OUT and the OS's reason, and leaves OUT as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import tensorflow_datasets as tfds

from data_prep.builders.base import FORMATS, ConversionRun, HeadPoseBuilder
from data_prep.builders.head_pose import BUILDERS, SyntheticHeads
from data_prep.common import ConversionError
from data_prep.datasets import READERS, reader
from data_prep.publish import (
    FEATURES_FILE,
    INFO_FILE,
    METADATA_FILE,
    check_split,
    publish,
    read_json_object,
    refuse_existing,
    refuse_foreign,
    staging_root,
    stale_staging,
)
from hpe_jax.cli import os_error_in_chain, run_cli
from hpe_jax.data.source import open_dataset
from hpe_jax.errors import UserError
from hpe_jax.folder_lock import folder_lock

log = logging.getLogger(__name__)

# The datasets' labels (``_label``) as the staging folders name them.
STAGING_LABELS = (
    *(builder.name for builder in BUILDERS.values()),
    *(f"{SyntheticHeads.name}-{fmt}" for fmt in FORMATS),
)
# array_record reports a failed open / write as "write() failed: <strerror>; writing <path>; ...".
_WRITER_FAILURE = re.compile(r"\w+\(\) failed: ([^;]+); \w+ ([^;]+);")
_ERRNO_OF_TEXT = {os.strerror(code): code for code in errno.errorcode}


def make_builder(
    dataset: str, data_dir: Path, *, synthetic: bool = False, run: ConversionRun | None = None
) -> HeadPoseBuilder:
    """The builder of ``dataset`` (a ``--dataset`` name) writing under TFDS data dir
    ``data_dir``; with ``synthetic``, ``synthetic_heads`` in that format."""
    kwargs: dict[str, Any] = {"data_dir": data_dir, "file_format": "array_record", "run": run}
    if synthetic:
        return SyntheticHeads(config=dataset, **kwargs)
    return BUILDERS[dataset](**kwargs)


def _label(builder: HeadPoseBuilder) -> str:
    config = builder.builder_config
    return builder.name if config is None else f"{builder.name}-{config.name}"


def _target(dataset: str, output_dir: Path, synthetic: bool) -> tuple[HeadPoseBuilder, Path]:
    """The builder of ``dataset`` (its features, label and version) and the version folder it
    has in ``output_dir``, found without reading what that folder holds (TFDS would read a
    dataset there, failing on damaged metadata)."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch).resolve()
        target = make_builder(dataset, root, synthetic=synthetic)
        return target, output_dir / Path(target.data_dir).relative_to(root)


def _refuse_unreadable(final: Path) -> None:
    """Raises ConversionError when the dataset at ``final`` has metadata that cannot be read
    (``dataset_info.json``, ``features.json``, ``metadata.json``): a split could not be added."""
    if not (final / INFO_FILE).is_file():
        return
    try:
        open_dataset(final)
        read_json_object(final / METADATA_FILE)
    except UserError as err:
        raise ConversionError(
            f"{err}; nothing converted: move that dataset away or choose another --output_dir"
        ) from err


def _refuse_other_features(target: HeadPoseBuilder, final: Path) -> None:
    """Raises ConversionError when the dataset at ``final`` has other features than
    ``target`` writes (its split could not be added there)."""
    if not (final / INFO_FILE).is_file():
        return
    with tempfile.TemporaryDirectory() as scratch:
        target.info.features.save_config(scratch)
        ours = (Path(scratch) / FEATURES_FILE).read_bytes()
    theirs = final / FEATURES_FILE
    if not theirs.is_file() or theirs.read_bytes() != ours:
        raise ConversionError(
            f"{final} holds a dataset with other features than {_label(target)} has (written "
            "by another version of hpe-jax, or edited); nothing converted: choose another "
            "--output_dir"
        )


def _write_failure(err: BaseException, output_dir: Path) -> OSError | None:
    """The OS error behind ``err`` when it is a failed write into ``output_dir`` (found in the
    exception's chain, or in array_record's message, which carries only the OS's text), as an
    OSError naming ``output_dir``; None for any other error."""
    found = os_error_in_chain(err)
    if found is not None:
        code, path = found.errno, found.filename
        text = found.strerror or (None if code is None else os.strerror(code))
    elif match := _WRITER_FAILURE.search(str(err)):
        text, path = match[1], match[2]
        code = _ERRNO_OF_TEXT.get(text)
    else:
        return None
    if code is None:
        return None
    inside = path is not None and Path(os.fspath(path)).resolve().is_relative_to(output_dir)
    if inside or (path is None and code in (errno.ENOSPC, errno.EDQUOT)):
        return OSError(code, text, str(output_dir))
    return None


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
    synthetic: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Converts one split of ``dataset`` from ``data_dir`` into a TFDS dataset in ``output_dir``.

    Args:
      dataset: ``300w_lp``, ``aflw2000``, ``biwi`` or ``dad``.
      filename_list: the original's list file (relative names without extension, or npz
        indices; for dad the annotation json; for biwi also one aggregated npz). None: scan
        ``data_dir``.
      split: the split to write (letters, digits, ``_``); the dataset must not hold it yet.
      num_shards: record files of the split; None: TFDS's choice (by size).
      workers: processes loading and checking samples.
      on_error: ``fail`` stops at the first bad sample; ``skip`` skips, counts and lists it.
      max_abs_angle: drop samples with any |yaw|, |pitch| or |roll| above this (degrees);
        ``auto``: 99 for aflw2000 and dad, no limit for the others. Unless None, samples the
        angle bins cannot label (any |angle| >= 100, which training refuses) are dropped too;
        None keeps every sample (a dataset for evaluation only).
      synthetic: the files are synthetic heads in ``dataset``'s format (dataset
        ``synthetic_heads/<dataset>``).
      progress: show a progress bar (records/s) on stderr.
      overwrite: replace ``split`` if the dataset holds it (only that split's files and
        entries); without it such a split is refused.

    Returns:
      The split's metadata (as in ``metadata.json``) with ``dataset`` (the TFDS name),
      ``split``, ``dataset_dir`` (the version folder), ``num_records``, ``num_shards`` and
      ``records_per_shard``.

    Raises:
      ConversionError: unusable input, a bad sample with ``on_error='fail'``, or a split the
        dataset already holds (without ``overwrite``).
      FolderBusyError: another live conversion holds ``output_dir``.
      OSError: a failed write into ``output_dir`` (``filename``: ``output_dir``).
    """
    module = reader(dataset)
    check_split(split)
    if on_error not in ("fail", "skip"):
        raise UserError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    if num_shards is not None and num_shards < 1:
        raise UserError(f"num_shards must be >= 1, got {num_shards}")
    limit = FORMATS[dataset].max_abs_angle if max_abs_angle == "auto" else max_abs_angle
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise ConversionError(f"{data_dir}: data dir not found")
    output_dir = Path(output_dir).resolve()
    target, final = _target(dataset, output_dir, synthetic)
    label = _label(target)
    refuse_foreign(final)
    _refuse_unreadable(final)
    if not overwrite:
        refuse_existing(final, split)
    _refuse_other_features(target, final)
    list_path = None if filename_list is None else Path(filename_list).resolve()
    items = module.list_items(data_dir, list_path, split)
    if not items:
        raise ConversionError(f"{data_dir}: nothing to convert")
    if num_shards is not None and num_shards > len(items):
        raise ConversionError(
            f"--num_shards {num_shards}: more record files than the {len(items)} samples "
            f"listed in {data_dir}; choose at most {len(items)}"
        )

    run = ConversionRun(
        data_dir,
        items,
        split,
        workers,
        on_error,
        limit,
        list_path,
        progress,
        labelled_only=max_abs_angle is not None,
        num_shards=num_shards,
    )
    with contextlib.ExitStack() as stack:
        try:
            interrupted = stack.enter_context(
                folder_lock(output_dir, f"python -m data_prep writing {label}/{split}")
            )
        except OSError as e:  # the folder cannot be made or written
            raise OSError(e.errno, e.strerror, str(output_dir)) from e
        for stale in stale_staging(output_dir, STAGING_LABELS):
            log.warning(
                "removing %s, left by an interrupted conversion (%s)",
                stale,
                interrupted or "its process unknown",
            )
            shutil.rmtree(stale)
        root = staging_root(output_dir, label, split)
        builder = make_builder(dataset, root, synthetic=synthetic, run=run)
        tfds.display_progress_bar(False)  # the run's own bar counts records against the total
        try:
            builder.download_and_prepare(
                download_dir=root / "downloads",
                download_config=tfds.download.DownloadConfig(num_shards=num_shards),
            )
            publish(Path(builder.data_dir), final, split, overwrite=overwrite)
        except Exception as err:
            if isinstance(err, UserError) or (cause := _write_failure(err, output_dir)) is None:
                raise
            raise cause from err
        finally:
            shutil.rmtree(root, ignore_errors=True)
    info = builder.info.splits[split]
    return {
        **builder.info.metadata[split],
        "dataset": label.replace("-", "/"),
        "split": split,
        "dataset_dir": str(final),
        "num_records": info.num_examples,
        "num_shards": info.num_shards,
        "records_per_shard": list(info.shard_lengths),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m data_prep``."""
    p = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Convert a head-pose dataset into a TFDS dataset (array_record files).",
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
    p.add_argument(
        "--split",
        default="train",
        help="split to write (letters, digits, '_'; default: train); refused if the dataset "
        "already holds it, unless --overwrite",
    )
    p.add_argument("--num_shards", type=int, help="record files of the split (default: by size)")
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="DATA_DIR holds synthetic heads (python -m data_prep.synthetic) in this format: "
        "written as dataset synthetic_heads/<format>",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--on_error", choices=("fail", "skip"), default="fail")
    angle = p.add_mutually_exclusive_group()
    angle.add_argument(
        "--max_abs_angle",
        type=float,
        help="drop samples with any |angle| above this many degrees (default: 99 for aflw2000 "
        "and dad, no filter for 300w_lp and biwi)",
    )
    angle.add_argument(
        "--no_angle_filter",
        action="store_true",
        help="keep every sample, also those with |angle| >= 100 that the angle bins cannot "
        "label (by default dropped and counted: training refuses them)",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the split if the dataset already holds it (only that split's files and "
        "metadata; the other splits stay)",
    )
    p.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the converter CLI; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.no_angle_filter:
        max_abs_angle: float | Literal["auto"] | None = None
    else:
        max_abs_angle = "auto" if args.max_abs_angle is None else args.max_abs_angle
    return run_cli(
        lambda: _convert_and_report(args, max_abs_angle),
        verbose=args.verbose,
        folder=args.output_dir,
    )


def _convert_and_report(
    args: argparse.Namespace, max_abs_angle: float | Literal["auto"] | None
) -> None:
    """Converts what ``args`` names and prints the one-line summary."""
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
        synthetic=args.synthetic,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print(
        f"{meta['dataset']}/{meta['split']}: wrote {meta['num_records']} records in "
        f"{meta['num_shards']} file(s) to {meta['dataset_dir']}; filtered {meta['num_filtered']} "
        f"(max |angle| {meta['max_abs_angle']}), skipped {meta['num_skipped']} bad sample(s)"
    )
