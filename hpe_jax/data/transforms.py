"""Crop, augmentation and normalisation of face images (numpy / PIL, pure functions).

Images are (H, W, 3) uint8 RGB on input and (S, S, 3) float32 NHWC-ready on output, normalised
with the ImageNet mean and std. Boxes are (x_min, y_min, x_max, y_max) in pixels. Angles are
degrees, order (yaw, pitch, roll).

Training (the original's pipeline, albumentations-style, re-implemented cheaply):

1. Loose crop factor ``k ~ U[0.2, 0.4]`` (``loose_box``); records without a box (BIWI) use the
   whole image instead.
2. With probability ``augment``, one geometric option chosen uniformly among
   ``flip`` (only when enabled), ``shift``, ``scale`` and ``crop``, and one photometric option
   chosen uniformly among ``blur``, ``brightness_contrast``, ``noise`` and ``none``; otherwise
   the plain crop with no photometric change. Parameters:

   - ``shift``: the crop window moves by ``U[-0.1, 0.1]`` of its width and of its height;
   - ``scale`` (random-resized-crop): a sub-window of area ``U[0.8, 1.0]`` of the crop and
     aspect ratio ``exp(U[log 3/4, log 4/3])`` relative to the crop's (clipped to fit), placed
     uniformly inside it;
   - ``flip``: the crop is mirrored left-right after resizing, yaw and roll change sign;
   - ``blur``: Gaussian blur with standard deviation ``U[0.1, 2.0]`` pixels (at the output
     size);
   - ``brightness_contrast``: ``x * (1 + c) + 255 * b`` with ``c, b ~ U[-0.2, 0.2]``, clipped
     to [0, 255];
   - ``noise``: additive Gaussian noise of standard deviation ``U[0, 10]`` (of 255), clipped.

3. Resize to (S, S) (PIL bilinear, antialiased), ImageNet normalisation.

Evaluation: AFLW2000 crops with ``k = 0.2`` and resizes; BIWI resizes to the square
``input_size`` and centre-crops ``crop_size`` (torchvision ``Resize((s, s))`` + ``CenterCrop``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageFilter

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_NORM_SCALE = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32)
_NORM_OFFSET = (IMAGENET_MEAN / IMAGENET_STD).astype(np.float32)

TRAIN_K_RANGE = (0.2, 0.4)
EVAL_K = 0.2
SHIFT_FRACTION = 0.1
SCALE_AREA_RANGE = (0.8, 1.0)
SCALE_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
BLUR_SIGMA_RANGE = (0.1, 2.0)
BRIGHTNESS_LIMIT = 0.2
CONTRAST_LIMIT = 0.2
NOISE_STD_MAX = 10.0

GEOMETRIC_OPS = ("flip", "shift", "scale", "crop")
PHOTOMETRIC_OPS = ("blur", "brightness_contrast", "noise", "none")

_FULL_WINDOW = (0.0, 0.0, 1.0, 1.0)


def _as_box(box) -> np.ndarray:
    b = np.asarray(box, np.float64).reshape(-1)
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise ValueError(f"box must be 4 finite values (x_min, y_min, x_max, y_max), got {box!r}")
    if not (b[2] > b[0] and b[3] > b[1]):
        raise ValueError(f"box must have x_max > x_min and y_max > y_min, got {b.tolist()}")
    return b


def loose_box(box, k: float) -> np.ndarray:
    """The original's loosened face box, computed with its sequential in-place updates.

    The original moves the edges one after the other and measures the box size from the
    edges as they are at that moment, so the later terms use the already-moved edges::

        x_min -= 0.6 * k * |x_max - x_min|
        y_min -= 2 * k * |y_max - y_min|
        x_max += 0.6 * k * |x_max - x_min|   # width includes the moved x_min
        y_max += 0.6 * k * |y_max - y_min|   # height includes the moved y_min

    e.g. box (100, 100, 200, 300), k = 0.25 -> (85, 0, 217.25, 345).

    Args:
      box: (4,) tight box (x_min, y_min, x_max, y_max), pixels.
      k: loosening factor (training draws it from [0.2, 0.4], evaluation uses 0.2).

    Returns:
      (4,) float64 loose box, pixels (may extend outside the image).
    """
    x_min, y_min, x_max, y_max = _as_box(box).tolist()
    x_min -= 0.6 * k * abs(x_max - x_min)
    y_min -= 2 * k * abs(y_max - y_min)
    x_max += 0.6 * k * abs(x_max - x_min)
    y_max += 0.6 * k * abs(y_max - y_min)
    return np.array([x_min, y_min, x_max, y_max])


def sub_box(box, window: tuple[float, float, float, float]) -> np.ndarray:
    """The part of ``box`` given by ``window`` in units of the box's width and height.

    Args:
      box: (4,) box (x_min, y_min, x_max, y_max), pixels.
      window: (u0, v0, u1, v1); (0, 0, 1, 1) is the box itself, (0.1, 0, 1.1, 1) the box moved
        right by a tenth of its width.

    Returns:
      (4,) float64 box, pixels.
    """
    b = _as_box(box)
    w, h = b[2] - b[0], b[3] - b[1]
    u0, v0, u1, v1 = window
    return np.array([b[0] + u0 * w, b[1] + v0 * h, b[0] + u1 * w, b[1] + v1 * h])


def crop_resize(image: Image.Image, box, size: int) -> Image.Image:
    """Crops ``box`` out of ``image`` as PIL does and resizes the crop to ``size`` x ``size``.

    The coordinates are truncated with ``int()`` as the original's ``img.crop((int(x_min), ...))``;
    regions outside the image are filled black (PIL crop semantics). Resizing is PIL bilinear.

    Args:
      image: RGB PIL image.
      box: (4,) box (x_min, y_min, x_max, y_max), pixels.
      size: output side S, pixels.

    Returns:
      (S, S) RGB PIL image.
    """
    x_min, y_min, x_max, y_max = (int(v) for v in _as_box(box))
    if x_max <= x_min or y_max <= y_min:
        raise ValueError(f"crop box {[x_min, y_min, x_max, y_max]} is empty after truncation")
    return image.crop((x_min, y_min, x_max, y_max)).resize((size, size), Image.Resampling.BILINEAR)


def resize_center_crop(image: Image.Image, input_size: int, crop_size: int) -> Image.Image:
    """The original's BIWI test transform: torchvision ``Resize((input_size, input_size))`` (a
    square, bilinear, whatever the aspect ratio) then ``CenterCrop(crop_size)``, whose window
    starts at ``round((input_size - crop_size) / 2)``.

    Returns:
      (crop_size, crop_size) RGB PIL image.
    """
    if crop_size > input_size:
        raise ValueError(f"crop_size {crop_size} must not exceed input_size {input_size}")
    image = image.resize((input_size, input_size), Image.Resampling.BILINEAR)
    start = round((input_size - crop_size) / 2.0)
    return image.crop((start, start, start + crop_size, start + crop_size))


def normalize(image) -> np.ndarray:
    """ImageNet normalisation: ``(x / 255 - mean) / std`` per RGB channel.

    Args:
      image: (H, W, 3) RGB, uint8 or float in [0, 255] (PIL image or array).

    Returns:
      (H, W, 3) float32.
    """
    x = np.asarray(image, np.float32) * _NORM_SCALE
    x -= _NORM_OFFSET
    return x


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Every random choice of one training example (see the module docstring).

    Attributes:
      k: loose-crop factor.
      window: crop window in units of the loose box, or of the whole image when there is no
        box (see ``sub_box``).
      flip: mirror left-right (negates yaw and roll).
      photometric: one of ``PHOTOMETRIC_OPS``.
      blur_sigma: Gaussian blur standard deviation, output pixels.
      contrast: contrast change c (multiplier 1 + c).
      brightness: brightness change b (offset 255 * b).
      noise_std: noise standard deviation, in 0..255 units.
      noise_seed: seed of the noise pattern.
    """

    k: float
    window: tuple[float, float, float, float] = _FULL_WINDOW
    flip: bool = False
    photometric: str = "none"
    blur_sigma: float = 0.0
    contrast: float = 0.0
    brightness: float = 0.0
    noise_std: float = 0.0
    noise_seed: int = 0


def sample_augment_params(rng: np.random.Generator, *, augment: float, flip: bool) -> AugmentParams:
    """Draws the random choices of one training example from ``rng``.

    Args:
      rng: the record's generator (grain gives one per record, fixed by seed and position).
      augment: probability in [0, 1] of applying a geometric + photometric augmentation.
      flip: whether the horizontal flip is one of the geometric options.
    """
    if not 0.0 <= augment <= 1.0:
        raise ValueError(f"augment must be a probability in [0, 1], got {augment}")
    k = float(rng.uniform(*TRAIN_K_RANGE))
    if rng.random() >= augment:
        return AugmentParams(k=k)
    geometric_ops = GEOMETRIC_OPS if flip else GEOMETRIC_OPS[1:]
    geometric = geometric_ops[rng.integers(len(geometric_ops))]
    window = _FULL_WINDOW
    if geometric == "shift":
        dx, dy = rng.uniform(-SHIFT_FRACTION, SHIFT_FRACTION, size=2).tolist()
        window = (dx, dy, 1.0 + dx, 1.0 + dy)
    elif geometric == "scale":
        area = rng.uniform(*SCALE_AREA_RANGE)
        ratio = np.exp(rng.uniform(*np.log(SCALE_RATIO_RANGE)))
        w = min(1.0, float(np.sqrt(area * ratio)))
        h = min(1.0, float(np.sqrt(area / ratio)))
        u0, v0 = rng.uniform(0.0, 1.0, size=2) * (1.0 - w, 1.0 - h)
        window = (float(u0), float(v0), float(u0) + w, float(v0) + h)
    photometric = PHOTOMETRIC_OPS[rng.integers(len(PHOTOMETRIC_OPS))]
    params = {"k": k, "window": window, "flip": geometric == "flip", "photometric": photometric}
    if photometric == "blur":
        params["blur_sigma"] = float(rng.uniform(*BLUR_SIGMA_RANGE))
    elif photometric == "brightness_contrast":
        params["contrast"] = float(rng.uniform(-CONTRAST_LIMIT, CONTRAST_LIMIT))
        params["brightness"] = float(rng.uniform(-BRIGHTNESS_LIMIT, BRIGHTNESS_LIMIT))
    elif photometric == "noise":
        params["noise_std"] = float(rng.uniform(0.0, NOISE_STD_MAX))
        params["noise_seed"] = int(rng.integers(2**63))
    return AugmentParams(**params)


def _photometric(image: Image.Image, params: AugmentParams) -> np.ndarray:
    """The photometric option of ``params`` applied; (H, W, 3) float32 in [0, 255]."""
    op = params.photometric
    if op not in PHOTOMETRIC_OPS:
        raise ValueError(f"unknown photometric op {op!r}, expected one of {PHOTOMETRIC_OPS}")
    if op == "blur":
        image = image.filter(ImageFilter.GaussianBlur(radius=params.blur_sigma))
    x = np.array(image, np.float32)
    if op == "brightness_contrast":
        x *= 1.0 + params.contrast
        x += 255.0 * params.brightness
        np.clip(x, 0.0, 255.0, out=x)
    elif op == "noise":
        noise = np.random.default_rng(params.noise_seed).standard_normal(x.shape, np.float32)
        noise *= params.noise_std
        x += noise
        np.clip(x, 0.0, 255.0, out=x)
    return x


def augment_example(
    image: np.ndarray, box, pose, params: AugmentParams, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One training example: loose crop, geometric and photometric option, resize, normalise.

    Args:
      image: (H, W, 3) uint8 RGB.
      box: (4,) tight face box (x_min, y_min, x_max, y_max) in pixels, or None to use the
        whole image (no loose crop, e.g. BIWI face crops).
      pose: (3,) degrees (yaw, pitch, roll).
      params: the random choices (``sample_augment_params``).
      size: output side S, pixels.

    Returns:
      ``(image, angles)``: (S, S, 3) float32 normalised, and (3,) float32 degrees
      (yaw, pitch, roll), yaw and roll negated when flipped.
    """
    pil = Image.fromarray(image)
    base = (0.0, 0.0, pil.width, pil.height) if box is None else loose_box(box, params.k)
    out = crop_resize(pil, sub_box(base, params.window), size)
    angles = np.asarray(pose, np.float32).reshape(3).copy()
    if params.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        angles[[0, 2]] *= -1.0
    return normalize(_photometric(out, params)), angles
