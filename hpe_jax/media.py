"""Photos and videos in and out for ``python -m hpe_jax.predict``.

``list_inputs`` expands the command line's paths (files; folders: every image and video below
them, sorted) into ``Input`` items, each with the path of its annotated copy in the output folder
(a file's name; a folder's files keep their path below the folder). ``read_image`` and
``read_frames`` decode to (H, W, 3) uint8 RGB; ``VideoOut`` writes an annotated video. What
cannot be read is a UserError naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hpe_jax.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# Codec of the annotated video by suffix; other suffixes are written as .mp4.
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}


@dataclass(frozen=True)
class Input:
    """One input file: ``path`` as found, ``output`` the path of its annotated copy, ``video``
    whether it is read as a video."""

    path: Path
    output: Path
    video: bool


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _annotated_path(relative: Path, video: bool, output_dir: Path) -> Path:
    if video and relative.suffix.lower() not in _FOURCC:
        relative = relative.with_suffix(".mp4")
    return output_dir / relative


def list_inputs(paths: Sequence[str | Path], output_dir: str | Path) -> list[Input]:
    """The image and video files named by ``paths`` (files, or folders searched recursively),
    in order, with their annotated copies' paths under ``output_dir``.

    When ``output_dir`` is a subfolder of an input folder, the files in it (an earlier run's
    copies) are left out of that folder's. A missing path, a file that is neither an image nor a
    video (by suffix), a folder without any, two inputs whose copies would share a path, or a
    copy that would replace its input is a UserError.
    """
    output_dir = Path(output_dir)
    resolved_output = output_dir.resolve()
    found: list[Input] = []
    for given in map(Path, paths):
        if given.is_dir():
            inside = given.resolve()
            below = resolved_output != inside and resolved_output.is_relative_to(inside)
            files = sorted(
                p
                for p in given.rglob("*")
                if p.is_file()
                and _kind(p)
                and not (below and p.resolve().is_relative_to(resolved_output))
            )
            if not files:
                raise UserError(
                    f"{given}: folder holds no image ({', '.join(IMAGE_SUFFIXES)}) or video "
                    f"({', '.join(VIDEO_SUFFIXES)}) files"
                )
            pairs = [(p, p.relative_to(given)) for p in files]
        elif given.is_file():
            if _kind(given) is None:
                raise UserError(
                    f"{given}: expected an image ({', '.join(IMAGE_SUFFIXES)}) or a video "
                    f"({', '.join(VIDEO_SUFFIXES)})"
                )
            pairs = [(given, Path(given.name))]
        else:
            raise UserError(f"{given}: no such file or folder")
        for path, relative in pairs:
            video = _kind(path) == "video"
            found.append(Input(path, _annotated_path(relative, video, output_dir), video))
    outputs: dict[Path, Path] = {}
    for item in found:
        target = item.output.resolve()
        if target == item.path.resolve():
            raise UserError(
                f"{item.path}: its annotated copy would replace it; choose another --output folder"
            )
        if target in outputs:
            raise UserError(
                f"{outputs[target]} and {item.path} would both be annotated as {item.output}; "
                "give them in separate runs or rename one"
            )
        outputs[target] = item.path
    return found


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as (H, W, 3) uint8 RGB, turned upright by its EXIF orientation."""
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Writes (H, W, 3) uint8 RGB ``image`` to ``path`` (format from the suffix), creating its
    folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(image).save(path, **options)


@dataclass(frozen=True)
class VideoInfo:
    """``frames``: the container's frame count (0 when unknown); ``fps`` frames per second."""

    frames: int
    fps: float


def _open_video(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"{path}: not a readable video")
    return capture


def video_info(path: str | Path) -> VideoInfo:
    """Frame count and rate of the video at ``path`` as its container states them."""
    capture = _open_video(Path(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        return VideoInfo(
            max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0), fps if fps > 0 else 25.0
        )
    finally:
        capture.release()


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """The frames of the video at ``path`` in order, each (H, W, 3) uint8 RGB; a video that
    cannot be opened or yields no frame is a UserError."""
    capture = _open_video(Path(path))
    try:
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if count == 0:
            raise UserError(f"{path}: video holds no readable frame")
    finally:
        capture.release()


class VideoOut:
    """Writes (H, W, 3) uint8 RGB frames to a video at ``path`` (codec from the suffix: MJPG for
    .avi, MPEG-4 otherwise) at ``fps``; opened on the first frame. Use as a context manager."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*_FOURCC.get(self.path.suffix.lower(), "mp4v"))
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise UserError(f"{self.path}: cannot write a video here")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Finishes the file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoOut:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
