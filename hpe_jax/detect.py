"""Face boxes in photos: MediaPipe's BlazeFace short-range detector, calibrated to the landmark box.

The model file is vendored (``hpe_jax/assets``, Apache-2.0, see its README) and checked against
its SHA-256 before use, so detection works offline; ``mediapipe`` (the ``predict`` extra) runs it.
BlazeFace's box sits higher than the 68-landmark box the network was trained with;
``calibrate_box`` moves each edge by ``BOX_CALIBRATION`` (fractions of the box's width or height).
Images are (H, W, 3) uint8 RGB; boxes (x_min, y_min, x_max, y_max) in pixels.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpe_jax.errors import UserError

MODEL_FILE = Path(__file__).parent / "assets" / "face_detection_short_range.tflite"
MODEL_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
# (landmark box - BlazeFace box) / BlazeFace box width (x) or height (y), per edge (x_min,
# y_min, x_max, y_max): the mean over the 17 real AFLW2000 / 300W-LP samples of ../shared
# (BENCHMARKS.md, "Predicting poses").
BOX_CALIBRATION = (0.008, 0.073, -0.028, 0.017)
MIN_SCORE = 0.5


@dataclass(frozen=True)
class Detection:
    """One face found: ``box`` (4,) float64 (x_min, y_min, x_max, y_max) pixels, ``score`` in
    [0, 1]."""

    box: np.ndarray
    score: float


def calibrate_box(box, offsets: tuple[float, float, float, float] = BOX_CALIBRATION) -> np.ndarray:
    """``box`` with each edge moved by ``offsets`` times the box's width (x edges) or height
    (y edges): a BlazeFace box -> the landmark box. (4,) float64 pixels."""
    b = np.asarray(box, np.float64)
    w, h = b[2] - b[0], b[3] - b[1]
    return b + np.asarray(offsets, np.float64) * np.array([w, h, w, h])


def read_model(path: str | Path = MODEL_FILE, sha256: str = MODEL_SHA256) -> bytes:
    """The bytes of the detector model at ``path``, after checking their SHA-256; a missing or
    altered file is a UserError naming it."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise UserError(
            f"{path}: face detector model has SHA-256 {digest}, expected {sha256}; "
            "reinstall hpe-jax"
        )
    return data


def _close_detector(detector: Any) -> None:
    """Closes a mediapipe detector; at interpreter exit, when mediapipe's executor has already
    shut down (its own ``__del__`` would then fail with a traceback), it is only marked closed."""
    try:
        detector.close()
    except RuntimeError:
        detector._handle = None


def _mediapipe() -> Any:
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as err:
        raise UserError(
            "face detection needs mediapipe: pip install 'hpe-jax[predict]' (or give the face "
            "boxes with --boxes, or face crops with --no-detect)"
        ) from err
    return mp, BaseOptions, vision


class FaceDetector:
    """BlazeFace short-range (faces within about 2 m of the camera, as in portraits and
    webcam frames) through MediaPipe Tasks, on the CPU.

    ``detect(image)`` -> the faces of one (H, W, 3) uint8 RGB image, best score first, boxes
    calibrated (``calibrate_box``) unless ``calibrate`` is False. Use as a context manager or
    call ``close()``.
    """

    def __init__(self, min_score: float = MIN_SCORE, calibrate: bool = True):
        if not 0.0 <= min_score <= 1.0:
            raise UserError(f"min_score must be in [0, 1], got {min_score}")
        mp, base_options, vision = _mediapipe()
        self._mp = mp
        self.calibrate = calibrate
        options = vision.FaceDetectorOptions(
            base_options=base_options(model_asset_buffer=read_model()),
            min_detection_confidence=min_score,
        )
        self._detector = vision.FaceDetector.create_from_options(options)
        self._close = weakref.finalize(self, _close_detector, self._detector)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """The faces in ``image`` ((H, W, 3) uint8 RGB), best score first."""
        rgb = np.ascontiguousarray(image, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {rgb.shape}")
        result = self._detector.detect(
            self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        )
        found = []
        for detection in result.detections:
            b = detection.bounding_box
            box = np.array(
                [b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height], np.float64
            )
            found.append(
                Detection(
                    calibrate_box(box) if self.calibrate else box, detection.categories[0].score
                )
            )
        return sorted(found, key=lambda d: -d.score)

    def close(self) -> None:
        """Releases the detector (once; later calls do nothing)."""
        self._close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
