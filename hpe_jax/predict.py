"""Head poses of the faces in photos and videos: predictions and annotated copies.

    python -m hpe_jax.predict INPUT... --checkpoint CKPT --output DIR [--no-detect]
        [--boxes FILE.json] [--batch_size N] [--input_size S] [--format json|csv] [--cube]
        [--verbose]

INPUT: image files, folders (every image and video below them) or video files (every frame).
CKPT: an orbax checkpoint of this project or an original PyTorch checkpoint file. Faces are found
with ``hpe_jax.detect`` (the ``predict`` extra), taken from ``--boxes`` (a file in the format of
``predictions.json``; ``score`` optional), or, with ``--no-detect``, each input is one face crop.
Writes ``DIR/predictions.json`` (or ``.csv``): one entry per image or video frame, ``{"image":
path, ["frame": index,] "faces": [{"box": [x0, y0, x1, y1], "score": s, "yaw": deg, "pitch": deg,
"roll": deg}]}``, box in the input's pixels, ``"faces": []`` when none is found; and an annotated
copy of each input under DIR (``hpe_jax.draw.draw_pose``). An unusable input is one error line
and exit status 2.
"""

from __future__ import annotations

import argparse
import collections
import csv
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hpe_jax.cli import run_cli
from hpe_jax.errors import UserError
from hpe_jax.media import (
    Input,
    VideoOut,
    list_inputs,
    read_frames,
    read_image,
    video_info,
    write_image,
)
from hpe_jax.predictor import DEFAULT_BATCH_SIZE, check_box

CSV_FIELDS = ("image", "frame", "face", "x0", "y0", "x1", "y1", "score", "yaw", "pitch", "roll")
BoxesKey = tuple[Path, int | None]


def read_boxes(path: str | Path) -> dict[BoxesKey, list[np.ndarray]]:
    """The face boxes of a ``--boxes`` file, by (resolved image path, frame index or None).

    The file is a JSON list like ``predictions.json``: ``{"image": path, "frame": i (videos),
    "faces": [{"box": [x0, y0, x1, y1]}, ...]}`` (a face may be the box list itself); relative
    image paths are relative to the current folder. A malformed file is a UserError naming it.
    """
    try:
        entries = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not JSON ({err})") from err
    if not isinstance(entries, list):
        raise UserError(f"{path}: expected a list of {{'image': ..., 'faces': [...]}} entries")
    table: dict[BoxesKey, list[np.ndarray]] = {}
    for i, entry in enumerate(entries):
        where = f"{path} entry {i}"
        if not (isinstance(entry, dict) and isinstance(entry.get("image"), str)):
            raise UserError(f"{where}: expected an object with 'image' (a path) and 'faces'")
        faces = entry.get("faces")
        if not isinstance(faces, list):
            raise UserError(f"{where}: 'faces' must be a list of boxes")
        frame = entry.get("frame")
        if frame is not None and not (isinstance(frame, int) and frame >= 0):
            raise UserError(f"{where}: 'frame' must be a frame index >= 0, got {frame!r}")
        table[(Path(entry["image"]).resolve(), frame)] = [
            check_box(face.get("box") if isinstance(face, dict) else face, where) for face in faces
        ]
    return table


def _check_boxes_cover(
    table: dict[BoxesKey, list[np.ndarray]], inputs: list[Input], path: str
) -> None:
    missing = [str(i.path) for i in inputs if not i.video and (i.path.resolve(), None) not in table]
    if missing:
        raise UserError(
            f"{path} has no entry for {missing[0]}"
            + (f" (and {len(missing) - 1} more images)" if len(missing) > 1 else "")
        )


def _frames(inputs: list[Input]) -> Iterator[tuple[Input, int | None, np.ndarray]]:
    """(input, frame index or None, RGB image) for every image and video frame, in order."""
    for item in inputs:
        if item.video:
            for index, frame in enumerate(read_frames(item.path)):
                yield item, index, frame
        else:
            yield item, None, read_image(item.path)


def _record(item: Input, frame: int | None, faces: list[dict[str, Any]]) -> dict[str, Any]:
    record: dict[str, Any] = {"image": str(item.path)}
    if frame is not None:
        record["frame"] = frame
    record["faces"] = faces
    return record


def write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    """One row per face (``CSV_FIELDS``); an image without faces has one row with empty face
    fields."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        for record in records:
            base = {"image": record["image"], "frame": record.get("frame", "")}
            if not record["faces"]:
                writer.writerow(base)
            for n, face in enumerate(record["faces"]):
                x0, y0, x1, y1 = face["box"]
                row = {"face": n, "x0": x0, "y0": y0, "x1": x1, "y1": y1}
                writer.writerow({**base, **row, **{k: face[k] for k in CSV_FIELDS[7:]}})


def predict(args: argparse.Namespace) -> int:
    """Runs ``python -m hpe_jax.predict`` with parsed arguments (module docstring)."""
    from hpe_jax.draw import draw_pose
    from hpe_jax.folder_lock import folder_lock
    from hpe_jax.predictor import Predictor

    if args.no_detect and args.boxes:
        raise UserError("--no-detect and --boxes exclude each other: give one")
    output = Path(args.output)
    inputs = list_inputs(args.inputs, output)
    table = None
    if args.boxes:
        table = read_boxes(args.boxes)
        _check_boxes_cover(table, inputs, args.boxes)
    total = sum(video_info(i.path).frames if i.video else 1 for i in inputs)
    with (
        folder_lock(output, "python -m hpe_jax.predict"),
        Predictor(
            args.checkpoint,
            variant=args.variant,
            input_size=args.input_size,
            batch_size=args.batch_size,
            detect=not args.no_detect and table is None,
            min_score=args.min_score,
        ) as predictor,
    ):
        pending: collections.deque[tuple[Input, int | None, np.ndarray]] = collections.deque()

        def images() -> Iterator[np.ndarray]:
            for item, frame, rgb in _frames(inputs):
                pending.append((item, frame, rgb))
                yield rgb

        # predict_many reads one entry of ``boxes`` right after each image (zip), so the entry
        # belongs to the image just appended to ``pending``.
        boxes = None
        if table is not None:
            boxes = (
                table.get((pending[-1][0].path.resolve(), pending[-1][1]), [])
                for _ in itertools.count()
            )
        records = []
        writer: VideoOut | None = None
        with tqdm(total=total, unit="img", disable=None) as bar:
            for faces in predictor.predict_many(images(), boxes):
                item, frame, rgb = pending.popleft()
                annotated = rgb
                for face in faces:
                    annotated = draw_pose(annotated, face, cube=args.cube)
                if item.video:
                    if writer is None or writer.path != item.output:
                        if writer is not None:
                            writer.close()
                        writer = VideoOut(item.output, video_info(item.path).fps)
                    writer.write(annotated)
                else:
                    write_image(item.output, annotated)
                records.append(_record(item, frame, [face.as_dict() for face in faces]))
                bar.update()
        if writer is not None:
            writer.close()
        if args.format == "csv":
            write_csv(output / "predictions.csv", records)
        else:
            lines = ",\n".join(json.dumps(record) for record in records)
            (output / "predictions.json").write_text(f"[\n{lines}\n]\n")
    found = sum(len(r["faces"]) for r in records)
    print(f"{len(records)} images or frames, {found} faces: {output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="images, folders or videos")
    parser.add_argument("--checkpoint", required=True, help="orbax checkpoint or PyTorch file")
    parser.add_argument("--output", required=True, help="folder for predictions and copies")
    parser.add_argument("--variant", default=None, help="s, m or l (PyTorch files; default s)")
    parser.add_argument(
        "--no-detect", action="store_true", help="each input is one face crop (no detection)"
    )
    parser.add_argument("--boxes", default=None, help="face boxes (JSON like predictions.json)")
    parser.add_argument(
        "--input_size",
        type=int,
        default=None,
        help="side of the network's input crops (default: the checkpoint's training "
        "data.image_size, else its model input_size)",
    )
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--min_score", type=float, default=None, help="detector threshold")
    parser.add_argument("--format", choices=("json", "csv"), default="json")
    parser.add_argument("--cube", action="store_true", help="also draw a cube on each face")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_cli(lambda: predict(args), verbose=args.verbose, folder=args.output)


if __name__ == "__main__":
    sys.exit(main())
