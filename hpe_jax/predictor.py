"""``Predictor``: head poses of the faces in photos, from a checkpoint, in a few lines.

    predictor = hpe_jax.Predictor("checkpoints/1200")
    for face in predictor.predict(rgb_image):
        print(face.box, face.yaw, face.pitch, face.roll)

Each face box becomes the crop the network was evaluated on (the evaluation transform's loose
box with k = 0.2, ``hpe_jax.data.transforms``), resized to the network's input side S and
ImageNet-normalised; the crops of one or more images run through the network in batches of up
to ``batch_size``, jitted with ``hpe_jax.compiler_options`` (``hpe_jax.evaluate.make_predictor``).
A batch is padded to the next power of two (or ``batch_size``), so a handful of shapes is
compiled. Images are (H, W, 3) uint8 RGB arrays or PIL images; boxes (x_min, y_min, x_max,
y_max) in pixels; angles in degrees (yaw, pitch, roll), the convention of DATA.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from hpe_jax.data import transforms
from hpe_jax.errors import UserError

if TYPE_CHECKING:
    from hpe_jax.detect import FaceDetector
    from hpe_jax.models import HPENet

DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class Face:
    """One face and its head pose.

    Attributes:
      box: (x_min, y_min, x_max, y_max) pixels of the input image: the tight face box (the
        detector's, calibrated to the landmark box; the given box; or the whole image).
      score: detector confidence in [0, 1]; None for a box that was given.
      yaw, pitch, roll: degrees (+yaw turns the nose to image-left, +pitch looks up, +roll lowers
        the eye on the image-right side).
    """

    box: tuple[float, float, float, float]
    score: float | None
    yaw: float
    pitch: float
    roll: float

    def as_dict(self) -> dict[str, Any]:
        """``{"box": [x0, y0, x1, y1], "score": s, "yaw": deg, "pitch": deg, "roll": deg}``."""
        return {
            "box": [round(v, 2) for v in self.box],
            "score": None if self.score is None else round(self.score, 4),
            "yaw": round(self.yaw, 3),
            "pitch": round(self.pitch, 3),
            "roll": round(self.roll, 3),
        }


@dataclass(frozen=True)
class _Boxes:
    """The faces of one image before the network: boxes (N, 4) pixels, scores (None: given), and
    whether the whole image is the face crop."""

    boxes: np.ndarray
    scores: list[float | None]
    whole: bool = False


def as_rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    """``image`` as an (H, W, 3) uint8 RGB array (a PIL image is converted to RGB)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"image must be (H, W, 3) uint8 RGB, got shape {array.shape} dtype {array.dtype}"
        )
    return array


def check_box(box: Sequence[float], where: str) -> np.ndarray:
    """``box`` as (4,) float64 if it is 4 finite numbers with x_max > x_min, y_max > y_min;
    else a UserError naming ``where``."""
    try:
        b = np.asarray(box, np.float64).reshape(-1)
    except (TypeError, ValueError):
        b = np.zeros(0)
    if b.shape != (4,) or not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
        raise UserError(
            f"{where}: box {box!r} is not [x_min, y_min, x_max, y_max] with x_max > x_min and "
            "y_max > y_min (pixels)"
        )
    return b


def _bucket(n: int, batch_size: int) -> int:
    """The padded size of a batch of ``n`` rows: the next power of two, at most ``batch_size``."""
    return min(1 << max(n - 1, 0).bit_length(), batch_size)


class Predictor:
    """Head poses of the faces in images with the network of a checkpoint.

    Args:
      checkpoint: an orbax checkpoint of this project or an original PyTorch checkpoint file
        (``hpe_jax.inference.load_for_inference``), or a network (``HPENet``, put in inference
        mode) with ``input_size``.
      variant: 's', 'm' or 'l' for a PyTorch file (default 's'); checked against an orbax one.
      input_size: side S of the network's input crops; default: the side the checkpoint's
        training run cropped to, else its model ``input_size``
        (``hpe_jax.inference.checkpoint_input_size``); 224 for a network.
      batch_size: most crops per network call.
      detect: find faces with ``hpe_jax.detect.FaceDetector`` (the ``predict`` extra); False:
        each image is one face crop, resized to S x S.
      min_score: the detector's minimum confidence.
    """

    def __init__(
        self,
        checkpoint: str | Path | HPENet,
        *,
        variant: str | None = None,
        input_size: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        detect: bool = True,
        min_score: float | None = None,
    ):
        from hpe_jax.evaluate import make_predictor
        from hpe_jax.inference import load_for_inference

        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._detector: FaceDetector | None = None
        if detect:
            from hpe_jax.detect import MIN_SCORE, FaceDetector

            self._detector = FaceDetector(MIN_SCORE if min_score is None else min_score)
        if isinstance(checkpoint, str | Path):
            model, stored_size = load_for_inference(checkpoint, variant)
        else:
            model, stored_size = checkpoint, 224
            model.eval()
        self.input_size = input_size or stored_size
        self._network = make_predictor(model)

    def angles(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) float32 normalised crops -> (N, 3) float32 degrees (yaw, pitch, roll),
        in batches of at most ``batch_size``."""
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start : start + self.batch_size]
            n = len(batch)
            padded = np.zeros((_bucket(n, self.batch_size), *batch.shape[1:]), np.float32)
            padded[:n] = batch
            out.append(self._network(padded)[:n])
        return np.concatenate(out) if out else np.zeros((0, 3), np.float32)

    def crops(self, image: np.ndarray, boxes: np.ndarray, whole: bool = False) -> np.ndarray:
        """The network inputs of one image's faces: (N, S, S, 3) float32 normalised.

        ``boxes`` (N, 4) tight face boxes, pixels, each loosened with the evaluation k = 0.2
        (``transforms.loose_box``) and cropped (black outside the image); ``whole``: the whole
        image resized (a face crop already)."""
        pil = Image.fromarray(image)
        s = self.input_size
        if whole:
            return transforms.normalize(transforms.resize(pil, s))[None]
        out = np.zeros((len(boxes), s, s, 3), np.float32)
        for i, box in enumerate(boxes):
            loose = transforms.loose_box(box, transforms.EVAL_K)
            out[i] = transforms.normalize(transforms.crop_resize(pil, loose, s))
        return out

    def _faces_of(self, image: np.ndarray, boxes: Sequence[Sequence[float]] | None) -> _Boxes:
        h, w = image.shape[:2]
        if boxes is not None:
            checked = [check_box(b, "boxes") for b in boxes]
            return _Boxes(np.array(checked).reshape(-1, 4), [None] * len(checked))
        if self._detector is None:
            return _Boxes(np.array([[0.0, 0.0, w, h]]), [None], whole=True)
        found = self._detector.detect(image)
        return _Boxes(np.array([d.box for d in found]).reshape(-1, 4), [d.score for d in found])

    def predict(
        self, image: np.ndarray | Image.Image, boxes: Sequence[Sequence[float]] | None = None
    ) -> list[Face]:
        """The faces of one image with their poses.

        Args:
          image: (H, W, 3) uint8 RGB array or PIL image.
          boxes: tight face boxes (x_min, y_min, x_max, y_max) pixels to use instead of the
            detector; None: detect (or, with ``detect=False``, the whole image is the face).

        Returns:
          One ``Face`` per face, best detector score first; empty when none is found.
        """
        return next(self.predict_many([image], None if boxes is None else [boxes]))

    def predict_many(
        self,
        images: Iterable[np.ndarray | Image.Image],
        boxes: Iterable[Sequence[Sequence[float]] | None] | None = None,
    ) -> Iterator[list[Face]]:
        """``predict`` over a stream of images, yielding each image's faces in order; the crops
        of consecutive images share network batches. ``boxes``: None, or an iterable with one entry
        per image (a list of boxes, or None to detect), whose next entry is read right after
        each image."""
        box_iter = iter(boxes) if boxes is not None else None
        pending: list[tuple[_Boxes, np.ndarray]] = []
        count = 0
        for image in images:
            rgb = as_rgb(image)
            faces = self._faces_of(rgb, None if box_iter is None else next(box_iter))
            crops = self.crops(rgb, faces.boxes, faces.whole)
            pending.append((faces, crops))
            count += len(crops)
            if count >= self.batch_size:
                yield from self._flush(pending)
                pending, count = [], 0
        yield from self._flush(pending)

    def _flush(self, pending: list[tuple[_Boxes, np.ndarray]]) -> Iterator[list[Face]]:
        if not pending:
            return
        angles = self.angles(np.concatenate([crops for _, crops in pending]))
        start = 0
        for faces, crops in pending:
            rows = angles[start : start + len(crops)]
            start += len(crops)
            yield [
                Face(tuple(float(v) for v in box), score, *(float(a) for a in row))
                for box, score, row in zip(faces.boxes, faces.scores, rows, strict=True)
            ]

    def close(self) -> None:
        """Releases the face detector."""
        if self._detector is not None:
            self._detector.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
