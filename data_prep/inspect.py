"""Looks at a converted split: ``python -m data_prep.inspect DATASET --split NAME``.

DATASET is a TFDS dataset written by ``python -m data_prep`` (its version folder, dataset folder
or a data dir holding only it). Prints the split's metadata and the first records;
``--contact_sheet PATH.png`` also saves a grid of the first ``--num`` images with their tight
box (yellow) and pose axes drawn HopeNet-style (x red, y green drawn downward, z blue out of the
face) at the box centre.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from data_prep.reader import read_records
from hpe_jax.data.source import check_split, dataset_label, open_dataset, split_metadata

LISTED = 5
CAPTION = 30
AXIS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


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
        raise ValueError("no records to draw")
    columns = min(columns, len(records))
    rows = math.ceil(len(records) / columns)
    sheet = Image.new("RGB", (columns * cell, rows * (cell + CAPTION)), (0, 0, 0))
    for i, record in enumerate(records):
        sheet.paste(
            draw_record(record, cell), ((i % columns) * cell, (i // columns) * (cell + CAPTION))
        )
    return sheet


def read_metadata(path: str | Path, split: str) -> dict[str, Any]:
    """The dataset's name, folder and record count with what the converter recorded about
    ``split``; FileNotFoundError / ValueError when there is no such dataset or split."""
    builder = open_dataset(path)
    return {
        "dataset": dataset_label(builder),
        "dataset_dir": str(builder.data_dir),
        "split": split,
        "num_records": check_split(builder, split),
        **split_metadata(builder, split),
    }


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


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the inspection CLI; returns the process exit status."""
    p = argparse.ArgumentParser(prog="python -m data_prep.inspect", description=__doc__)
    p.add_argument("output_dir", help="the TFDS dataset (local or a bucket path)")
    p.add_argument("--split", default="train")
    p.add_argument("--num", type=int, default=8, help="records to print / draw")
    p.add_argument("--contact_sheet", type=Path, help="save a PNG grid of the records here")
    p.add_argument("--columns", type=int, default=4)
    p.add_argument("--cell", type=int, default=224, help="cell size in pixels")
    args = p.parse_args(argv)
    try:
        meta = read_metadata(args.output_dir, args.split)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(_summary(meta), indent=1))
    records = list(islice(read_records(args.output_dir, args.split), args.num))
    for record in records:
        print(_describe(record))
    if args.contact_sheet is not None:
        contact_sheet(records, args.columns, args.cell).save(args.contact_sheet)
        print(f"contact sheet of {len(records)} records: {args.contact_sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
