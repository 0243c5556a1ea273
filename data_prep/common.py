"""What every dataset reader shares: the sample type, the error types and input checks."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hpe_jax.errors import UserError

KEPT_FORMATS = {"JPEG": "jpeg", "PNG": "png"}


class ConversionError(UserError):
    """The conversion cannot go on: a whole input is unusable, or a sample is bad under 'fail'."""


class SampleError(Exception):
    """One sample is bad. ``name`` is its relative name, ``path`` the file (or entry) at fault."""

    def __init__(self, name: str, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.name = name
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class Sample:
    """One loaded and checked sample, before serialisation.

    Attributes:
      name: the source's relative name, without extension.
      image_bytes: encoded image (the source bytes, or a lossless PNG).
      image_format: ``jpeg`` or ``png``.
      pose: (3,) float32, (yaw, pitch, roll) in degrees.
      box: (4,) float32 tight face box (x_min, y_min, x_max, y_max) in pixels, or None.
      landmarks: (R, K) float32 landmarks (row 0 = x, row 1 = y, row 2 = z), or None.
    """

    name: str
    image_bytes: bytes
    image_format: str
    pose: np.ndarray
    box: np.ndarray | None
    landmarks: np.ndarray | None


def resolve_inside(data_dir: Path, relative: str, name: str, where: str) -> Path:
    """``data_dir / relative``, refusing paths that are absolute or climb out of ``data_dir``.

    The check is on the path text (``..`` after normalisation), so symlinks inside the data
    dir that point elsewhere stay usable. Raises SampleError located at ``where`` (the file or
    entry giving the path, e.g. "train.json: entry 3").
    """
    if not isinstance(relative, str) or not relative:
        raise SampleError(name, where, f"expected a non-empty relative path, got {relative!r}")
    norm = os.path.normpath(relative)
    if os.path.isabs(relative) or norm == ".." or norm.startswith("../"):
        raise SampleError(name, where, f"path {relative!r} escapes the data dir {data_dir}")
    return data_dir / norm


def normalised_name(relative: str) -> str:
    """A relative name in normal form, e.g. ``./LFPW_Flip/x_1`` -> ``LFPW_Flip/x_1``."""
    return os.path.normpath(relative)


def read_name_list(path: str | Path) -> list[str]:
    """Non-empty stripped lines of a list file (the original's relative names / indices);
    ConversionError for an unreadable or empty list or one naming a sample twice."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConversionError(f"{path}: cannot read the filename list ({e})") from e
    numbered = [(f"line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    named = [(where, name) for where, name in numbered if name]
    if not named:
        raise ConversionError(f"{path}: the filename list is empty")
    refuse_duplicates(path, "line(s)", named)
    return [name for _, name in named]


def refuse_duplicates(path: str | Path, what: str, named: Sequence[tuple[str, str]]) -> None:
    """Raises ConversionError when two of ``named`` ((where, relative name) in ``path``, in
    order; ``what``: ``line(s)`` or ``entry(ies)``) name one sample (``normalised_name``),
    which would give duplicate records."""
    first: dict[str, str] = {}
    repeats = []
    for where, name in named:
        key = normalised_name(name)
        if key in first:
            repeats.append(f"{where} repeats {first[key]} ({name!r})")
        first.setdefault(key, where)
    if repeats:
        shown = "; ".join(repeats[:3]) + ("; ..." if len(repeats) > 3 else "")
        raise ConversionError(
            f"{path}: {len(repeats)} duplicate {what}, which would give duplicate records: "
            f"{shown}; remove them"
        )


def read_image_file(path: Path, name: str) -> tuple[bytes, str]:
    """Reads an image file and checks it decodes (PIL verify, then a full load).

    Returns ``(bytes, format)``: the file's own bytes for JPEG / PNG, else a lossless PNG of it.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SampleError(name, path, f"cannot read image ({e.strerror or e})") from e
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            source_format = img.format
            rgb = None if source_format in KEPT_FORMATS else np.asarray(img.convert("RGB"))
    except Exception as e:  # PIL raises many types on corrupt data; any of them means bad input
        raise SampleError(name, path, f"image does not decode ({type(e).__name__}: {e})") from e
    if rgb is None:
        return data, KEPT_FORMATS[source_format]
    return encode_png(rgb), "png"


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG of an (H, W, 3) uint8 RGB array."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def finite_array(value: object, name: str, path: Path | str, key: str) -> np.ndarray:
    """``value`` as a float64 array, raising SampleError if it is not real numeric (complex
    values are refused, not cast) or not finite."""
    if np.iscomplexobj(value):
        raise SampleError(name, path, f"{key}: complex values, expected real numbers")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SampleError(name, path, f"{key}: not numeric ({e})") from e
    if not np.all(np.isfinite(arr)):
        raise SampleError(name, path, f"{key}: contains NaN or infinite values: {arr.tolist()}")
    return arr


def stored_float32(arr: np.ndarray, name: str, path: Path | str, key: str) -> np.ndarray:
    """Finite ``arr`` as float32, the dtype it is stored in; SampleError naming its largest
    |value| when that is not finite in float32."""
    with np.errstate(over="ignore"):
        stored = np.asarray(arr).astype(np.float32)
    if not np.all(np.isfinite(stored)):
        biggest = float(np.abs(arr).max())
        raise SampleError(name, path, f"{key}: not finite in float32 (|value| up to {biggest:g})")
    return stored


def check_shape(arr: np.ndarray, shape: tuple[int | None, ...], name: str, path, key: str) -> None:
    """Raises SampleError unless ``arr.shape`` matches ``shape`` (None = any size)."""
    same_rank = arr.ndim == len(shape)
    if not (same_rank and all(s in (None, d) for s, d in zip(shape, arr.shape, strict=True))):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise SampleError(name, path, f"{key}: expected shape {want}, got {arr.shape}")


def tight_box(points: np.ndarray, name: str, path, key: str) -> np.ndarray:
    """Tight box (x_min, y_min, x_max, y_max) float32 of (R >= 2, K) points (rows 0/1 = x/y)."""
    xs, ys = points[0], points[1]
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
    if not (box[2] > box[0] and box[3] > box[1]):
        raise SampleError(name, path, f"{key}: the points give an empty box {box.tolist()}")
    return box
