"""Looks at a converted split: ``python -m data_prep.inspect DATASET --split NAME``.

DATASET is a TFDS dataset written by ``python -m data_prep`` (its version folder, dataset folder
or a data dir holding only it). Prints the split's metadata and the first records;
``--contact_sheet PATH.png`` also saves a grid of the first ``--num`` images with their tight
box (yellow) and pose axes drawn HopeNet-style (x red, y green drawn downward, z blue out of the
face) at the box centre.

``--augment N`` instead shows what the network is trained on: the first N samples of the
training loader (``make_train_loader`` with ``--seed``, ``--augment_prob``, default 0.5 as the
recipes, ``--flip`` true|false, ``--image_size``), as a grid with their angles (``--output
PATH.png``) and/or as ``--dump PATH.npz``: ``images`` uint8 (N, S, S, 3) RGB before
normalisation, ``angles`` float32 (N, 3) degrees (yaw, pitch, roll) after any flip.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from PIL import Image, ImageDraw

from data_prep.reader import read_records
from hpe_jax.cli import run_cli
from hpe_jax.data.pipeline import make_train_loader
from hpe_jax.data.source import check_split, dataset_label, open_dataset, split_metadata
from hpe_jax.data.transforms import denormalize
from hpe_jax.errors import UserError

LISTED = 5
CAPTION = 30
AXIS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
# --augment options and their defaults (the recipes' augmentation probability and flips).
AUGMENT_FLAGS = {
    "augment_prob": 0.5,
    "flip": True,
    "image_size": 224,
    "seed": 0,
    "output": None,
    "dump": None,
}


def axis_endpoints(
    yaw: float, pitch: float, roll: float, cx: float, cy: float, size: float
) -> list[tuple[float, float]]:
    """Image end points of the x, y, z head axes of length ``size`` drawn from (cx, cy).

    HopeNet's ``draw_axis`` projection; angles in degrees. At zero pose x points right, y down
    and z (towards the viewer) has zero length; positive yaw moves the z end to image-left.
    """
    p, y, r = math.radians(pitch), -math.radians(yaw), math.radians(roll)
    x_end = (
        cx + size * math.cos(y) * math.cos(r),
        cy + size * (math.cos(p) * math.sin(r) + math.cos(r) * math.sin(p) * math.sin(y)),
    )
    y_end = (
        cx - size * math.cos(y) * math.sin(r),
        cy + size * (math.cos(p) * math.cos(r) - math.sin(p) * math.sin(y) * math.sin(r)),
    )
    z_end = (cx + size * math.sin(y), cy - size * math.cos(y) * math.sin(p))
    return [x_end, y_end, z_end]


def draw_record(record: dict[str, Any], cell: int) -> Image.Image:
    """One contact-sheet cell: the image fitted into ``cell`` px, its box, axes and caption."""
    image = Image.fromarray(record["image"])
    scale = cell / max(image.size)
    shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    tile = Image.new("RGB", (cell, cell + CAPTION), (32, 32, 32))
    tile.paste(shown, (0, 0))
    draw = ImageDraw.Draw(tile)
    box = record["box"]
    if box is None:
        cx, cy, size = shown.width / 2, shown.height / 2, cell / 4
    else:
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=(255, 255, 0), width=2)
        cx, cy, size = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    yaw, pitch, roll = (float(v) for v in record["pose"])
    for end, colour in zip(
        axis_endpoints(yaw, pitch, roll, cx, cy, size), AXIS_COLOURS, strict=True
    ):
        draw.line((cx, cy, *end), fill=colour, width=3)
    draw.text((3, cell + 2), record["name"][-32:], fill=(255, 255, 255))
    draw.text((3, cell + 15), f"y {yaw:.1f} p {pitch:.1f} r {roll:.1f}", fill=(255, 255, 255))
    return tile


def contact_sheet(records: Sequence[dict[str, Any]], columns: int, cell: int) -> Image.Image:
    """A grid of ``draw_record`` cells, ``columns`` wide."""
    if not records:
        raise UserError("no records to draw")
    columns = min(columns, len(records))
    rows = math.ceil(len(records) / columns)
    sheet = Image.new("RGB", (columns * cell, rows * (cell + CAPTION)), (0, 0, 0))
    for i, record in enumerate(records):
        sheet.paste(
            draw_record(record, cell), ((i % columns) * cell, (i // columns) * (cell + CAPTION))
        )
    return sheet


def read_metadata(path: str | Path, split: str) -> dict[str, Any]:
    """The dataset's name, folder and record count (counted in its record files) with what
    the converter recorded about ``split`` (an entry of these names there is not shown);
    FileNotFoundError / ValueError when there is no such dataset or split."""
    builder = open_dataset(path)
    checked = {
        "dataset": dataset_label(builder),
        "dataset_dir": str(builder.data_dir),
        "split": split,
        "num_records": check_split(builder, split),
    }
    recorded = split_metadata(builder, split)
    return {**checked, **{key: v for key, v in recorded.items() if key not in checked}}


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata with the filtered / skipped lists cut to their first entries."""
    out = dict(meta)
    for key in ("filtered", "skipped"):
        entries = meta.get(key, [])
        out[key] = entries[:LISTED] + (
            [f"... {len(entries) - LISTED} more"] if len(entries) > LISTED else []
        )
    return out


def _describe(record: dict[str, Any]) -> str:
    pose = ", ".join(f"{v:.2f}" for v in record["pose"])
    box = "none" if record["box"] is None else ", ".join(f"{v:.1f}" for v in record["box"])
    lm = "none" if record["landmarks"] is None else "x".join(map(str, record["landmarks"].shape))
    h, w, _ = record["image"].shape
    return (
        f"{record['name']}: pose (yaw, pitch, roll) ({pose}) deg, box ({box}), "
        f"image {w}x{h} {record['image_format']}, landmarks {lm}"
    )


def training_samples(
    data_dir: str, split: str, num: int, *, augment: float, flip: bool, image_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``num`` samples of the training loader of ``split`` with ``seed`` (one process).

    Returns:
      ``images`` (num, S, S, 3) uint8 RGB before normalisation and ``angles`` (num, 3) float32
      degrees (yaw, pitch, roll), as the network gets them.
    """
    loader = make_train_loader(
        data_dir,
        split,
        batch_size=1,
        target_size=image_size,
        augment=augment,
        flip=flip,
        seed=seed,
        worker_count=0,
        shard_index=0,
        shard_count=1,
    )
    iterator = iter(loader)
    batches = [next(iterator) for _ in range(num)]
    iterator.close()
    images = np.stack([denormalize(b["image"][0]) for b in batches])
    return images, np.stack([np.asarray(b["angles"][0], np.float32) for b in batches])


def draw_sample(image: np.ndarray, angles: np.ndarray) -> Image.Image:
    """One training sample (S, S, 3) uint8 with its pose axes at the centre and its angles."""
    side = image.shape[0]
    tile = Image.new("RGB", (side, side + CAPTION), (32, 32, 32))
    tile.paste(Image.fromarray(image), (0, 0))
    draw = ImageDraw.Draw(tile)
    yaw, pitch, roll = (float(v) for v in angles)
    centre = side / 2
    for end, colour in zip(
        axis_endpoints(yaw, pitch, roll, centre, centre, side / 4), AXIS_COLOURS, strict=True
    ):
        draw.line((centre, centre, *end), fill=colour, width=2)
    draw.text((3, side + 8), f"y {yaw:.1f} p {pitch:.1f} r {roll:.1f}", fill=(255, 255, 255))
    return tile


def sample_sheet(images: np.ndarray, angles: np.ndarray, columns: int) -> Image.Image:
    """A grid of ``draw_sample`` tiles, ``columns`` wide."""
    tiles = [draw_sample(i, a) for i, a in zip(images, angles, strict=True)]
    columns = min(columns, len(tiles))
    w, h = tiles[0].size
    sheet = Image.new("RGB", (columns * w, math.ceil(len(tiles) / columns) * h), (0, 0, 0))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * w, (i // columns) * h))
    return sheet


def _flag_bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def _augment_flag_problem(args: argparse.Namespace) -> str | None:
    """The first problem with the ``--augment`` flags (their defaults filled in), or None."""
    if args.augment < 1:
        return f"--augment must be >= 1, got {args.augment}"
    if args.output is None and args.dump is None:
        return "--augment needs --output PATH.png and/or --dump PATH.npz"
    if not 0.0 <= args.augment_prob <= 1.0:
        return f"--augment_prob must be in [0, 1], got {args.augment_prob}"
    if args.image_size < 1:
        return f"--image_size must be >= 1, got {args.image_size}"
    if not 0 <= args.seed < 2**32:
        return f"--seed must be in [0, 2**32), got {args.seed}"
    if args.columns < 1:
        return f"--columns must be >= 1, got {args.columns}"
    return None


def augmented_main(args: argparse.Namespace) -> None:
    """``--augment``: draws, saves and/or dumps the training samples."""
    images, angles = training_samples(
        args.output_dir,
        args.split,
        args.augment,
        augment=args.augment_prob,
        flip=args.flip,
        image_size=args.image_size,
        seed=args.seed,
    )
    if args.output is not None:
        sample_sheet(images, angles, args.columns).save(args.output)
        print(f"sheet of {len(images)} training samples: {args.output}")
    if args.dump is not None:
        np.savez(args.dump, images=images, angles=angles)
        print(f"{len(images)} training samples: {args.dump}")


class _Parser(argparse.ArgumentParser):
    """Reports a bad flag in one line (no usage text)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the inspection CLI; returns the process exit status."""
    p = _Parser(prog="python -m data_prep.inspect", description=__doc__)
    p.add_argument("output_dir", help="the TFDS dataset (local or a bucket path)")
    p.add_argument("--split", default="train")
    p.add_argument("--num", type=int, default=8, help="records to print / draw")
    p.add_argument("--contact_sheet", type=Path, help="save a PNG grid of the records here")
    p.add_argument("--columns", type=int, default=4)
    p.add_argument("--cell", type=int, default=224, help="cell size in pixels")
    p.add_argument("--augment", type=int, help="show N training samples (augmented) instead")
    p.add_argument("--augment_prob", type=float, help="augmentation probability (default 0.5)")
    p.add_argument("--flip", type=_flag_bool, help="true|false: flips among the ops (true)")
    p.add_argument("--image_size", type=int, help="training image side S (224)")
    p.add_argument("--seed", type=int, help="training seed (0)")
    p.add_argument("--output", type=Path, help="--augment: save the samples' grid (PNG) here")
    p.add_argument("--dump", type=Path, help="--augment: save images and angles (npz) here")
    p.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    given = [f"--{key}" for key in AUGMENT_FLAGS if getattr(args, key) is not None]
    if args.augment is None and given:
        p.error(f"{', '.join(given)} only go with --augment N")
    if args.augment is not None:
        for key, default in AUGMENT_FLAGS.items():
            if getattr(args, key) is None:
                setattr(args, key, default)
        problem = _augment_flag_problem(args)
        if problem is not None:
            p.error(problem)
        return run_cli(lambda: augmented_main(args), verbose=args.verbose)
    return run_cli(lambda: _print_records(args), verbose=args.verbose)


def _print_records(args: argparse.Namespace) -> None:
    """Prints the split's summary and first records; draws the contact sheet if asked."""
    meta = read_metadata(args.output_dir, args.split)
    print(json.dumps(_summary(meta), indent=1))
    records = list(islice(read_records(args.output_dir, args.split), args.num))
    for record in records:
        print(_describe(record))
    if args.contact_sheet is not None:
        contact_sheet(records, args.columns, args.cell).save(args.contact_sheet)
        print(f"contact sheet of {len(records)} records: {args.contact_sheet}")


if __name__ == "__main__":
    raise SystemExit(main())
