"""Crop, training augmentation and normalisation of face images (numpy, PIL and OpenCV).

Images are (H, W, 3) uint8 RGB on input; training and evaluation examples are (S, S, 3) float32
NHWC, normalised with the ImageNet mean and std. Boxes are (x_min, y_min, x_max, y_max) in
pixels. Angles are degrees, order (yaw, pitch, roll). ``int()`` below truncates toward zero; u is
a fresh draw of U[0, 1).

Training sample (the original's dataset code, step for step; ``sample_augment_params`` draws the
choices, ``augment_image`` applies them), S the target size:

1. Records with a tight face box (300W-LP, DAD-3DHeads): the loose box with
   ``k = 0.2 + 0.2 u`` (``loose_box``). Records without a box (BIWI face crops): the whole image,
   never cropped.
2. If ``augment > 0`` and ``u <= augment``: one geometric op, uniform over ``flip``, ``shift``,
   ``scale``, ``none`` for boxed records and over ``flip``, ``scale``, ``none`` for face crops
   (``flip`` only when enabled):

   - ``flip``: crop (box truncated with ``int()``, black outside the image), mirror left-right,
     negate yaw and roll;
   - ``shift``: the loose box of the same width w and height h centred at
     ``(int(cx) + w kx, int(cy) + h ky)`` with (cx, cy) its centre and
     ``kx, ky = 0.2 u - 0.1`` (``shifted_box``), then the crop;
   - ``scale``: the crop resized to S x S (PIL bilinear, antialiased), then torchvision's
     ``RandomResizedCrop(S, scale=(0.8, 1), ratio=(3/4, 4/3))`` (``random_resized_crop_window``,
     ``resized_crop``);
   - ``none``: the crop.

   Then one photometric step ``r`` uniform over 1..4. For r in 1..3 the image is resized to S x S
   with OpenCV INTER_LINEAR (no antialias; ``opencv_resize``), then with probability 0.5 op r
   acts: 1 ``gaussian_blur`` (kernel 3, 5, 7 with probability 0.2, 0.4, 0.4, sigma 0), 2
   ``brightness_contrast`` (``alpha = 1 + U[-0.2, 0.2]``, ``beta = U[-0.2, 0.2]``), 3
   ``gauss_noise`` (variance ``U[10, 50]``). r = 4: nothing. Each op so acts on 1/8 of the
   augmented samples and none on 5/8.
3. Otherwise: the crop.
4. Resize to S x S (PIL bilinear, antialiased; the identity on an S x S image), normalise.

Evaluation: AFLW2000 crops with ``k = 0.2`` and resizes; BIWI resizes to the square
``input_size`` and centre-crops ``crop_size`` (torchvision ``Resize((s, s))`` + ``CenterCrop``).
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_NORM_SCALE = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32)
_NORM_OFFSET = (IMAGENET_MEAN / IMAGENET_STD).astype(np.float32)

TRAIN_K_RANGE = (0.2, 0.4)
EVAL_K = 0.2
SHIFT_FRACTION = 0.1
SCALE_AREA_RANGE = (0.8, 1.0)
SCALE_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
SCALE_TRIES = 10
PHOTOMETRIC_STEPS = 4  # r uniform over 1..4; r in 1..3 names PHOTOMETRIC_OPS[r - 1]
PHOTOMETRIC_P = 0.5
BLUR_KERNEL_RANGE = (3, 7)
BRIGHTNESS_LIMIT = 0.2
CONTRAST_LIMIT = 0.2
NOISE_VAR_RANGE = (10.0, 50.0)

GEOMETRIC_OPS = ("flip", "shift", "scale", "none")
FACE_CROP_GEOMETRIC_OPS = ("flip", "scale", "none")
PHOTOMETRIC_OPS = ("blur", "brightness_contrast", "noise")


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
      k: loosening factor (training draws it from [0.2, 0.4), evaluation uses 0.2).

    Returns:
      (4,) float64 loose box, pixels (may extend outside the image).
    """
    x_min, y_min, x_max, y_max = _as_box(box).tolist()
    x_min -= 0.6 * k * abs(x_max - x_min)
    y_min -= 2 * k * abs(y_max - y_min)
    x_max += 0.6 * k * abs(x_max - x_min)
    y_max += 0.6 * k * abs(y_max - y_min)
    return np.array([x_min, y_min, x_max, y_max])


def shifted_box(box, kx: float, ky: float) -> np.ndarray:
    """The training shift: the box of the same size centred at ``(int(cx) + w kx, int(cy) + h ky)``.

    (cx, cy) is the centre of ``box`` truncated toward zero, w and h its (untruncated) width and
    height.

    Args:
      box: (4,) box (x_min, y_min, x_max, y_max), pixels.
      kx, ky: shift in units of the width and of the height (training: in [-0.1, 0.1)).

    Returns:
      (4,) float64 box, pixels.
    """
    x_min, y_min, x_max, y_max = _as_box(box).tolist()
    w, h = x_max - x_min, y_max - y_min
    cx = int((x_max + x_min) / 2) + w * kx
    cy = int((y_max + y_min) / 2) + h * ky
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def crop(image: Image.Image, box) -> Image.Image:
    """``image.crop`` of ``box`` with its coordinates truncated by ``int()`` (the original's crop);
    regions outside the image are black.

    Args:
      image: RGB PIL image.
      box: (4,) box (x_min, y_min, x_max, y_max), pixels.

    Returns:
      RGB PIL image of (int(x_max) - int(x_min)) x (int(y_max) - int(y_min)) pixels.
    """
    x_min, y_min, x_max, y_max = (int(v) for v in _as_box(box))
    if x_max <= x_min or y_max <= y_min:
        raise ValueError(f"crop box {[x_min, y_min, x_max, y_max]} is empty after truncation")
    return image.crop((x_min, y_min, x_max, y_max))


def resize(image: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize((size, size))`` of a PIL image: PIL bilinear with antialias (a copy
    when the image is already ``size`` x ``size``)."""
    return image.resize((size, size), Image.Resampling.BILINEAR)


def crop_resize(image: Image.Image, box, size: int) -> Image.Image:
    """``crop`` then ``resize`` to ``size`` x ``size`` (the evaluation crop).

    Returns:
      (size, size) RGB PIL image.
    """
    return resize(crop(image, box), size)


def resize_center_crop(image: Image.Image, input_size: int, crop_size: int) -> Image.Image:
    """The original's BIWI test transform: torchvision ``Resize((input_size, input_size))`` (a
    square, bilinear, whatever the aspect ratio) then ``CenterCrop(crop_size)``, whose window
    starts at ``round((input_size - crop_size) / 2)``.

    Returns:
      (crop_size, crop_size) RGB PIL image.
    """
    if crop_size > input_size:
        raise ValueError(f"crop_size {crop_size} must not exceed input_size {input_size}")
    image = resize(image, input_size)
    start = round((input_size - crop_size) / 2.0)
    return image.crop((start, start, start + crop_size, start + crop_size))


def random_resized_crop_window(rng: np.random.Generator, size: int) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params`` on a ``size`` x ``size`` image, scale
    (0.8, 1.0), ratio (3/4, 4/3).

    Up to 10 tries of area ``size**2 * U[0.8, 1.0]`` and ratio ``r = exp(U[log 3/4, log 4/3])``:
    width ``round(sqrt(area r))``, height ``round(sqrt(area / r))``; the first that fits is placed
    uniformly (every integer offset equally likely). A window that does not fit is redrawn, never
    clipped; after 10 misfits the whole image.

    Returns:
      (left, top, width, height), integer pixels, inside the image.
    """
    area = size * size
    log_ratio = (math.log(SCALE_RATIO_RANGE[0]), math.log(SCALE_RATIO_RANGE[1]))
    for _ in range(SCALE_TRIES):
        target = area * float(rng.uniform(*SCALE_AREA_RANGE))
        ratio = math.exp(float(rng.uniform(*log_ratio)))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= size and 0 < h <= size:
            top = int(rng.integers(0, size - h + 1))
            left = int(rng.integers(0, size - w + 1))
            return left, top, w, h
    return 0, 0, size, size


def resized_crop(image: Image.Image, window: tuple[int, int, int, int], size: int) -> Image.Image:
    """The ``window`` (left, top, width, height) of ``image`` resized to ``size`` x ``size``
    (PIL bilinear, antialiased), as torchvision's ``resized_crop`` on a PIL image."""
    left, top, w, h = window
    return resize(image.crop((left, top, left + w, top + h)), size)


def opencv_resize(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, OpenCV INTER_LINEAR (no antialias); unchanged
    when already that size (albumentations ``Resize``)."""
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def gaussian_blur(image: np.ndarray, kernel: int) -> np.ndarray:
    """albumentations' ``GaussianBlur``: OpenCV's with a ``kernel`` x ``kernel`` kernel (odd) and
    sigma 0, border reflect 101. (H, W, 3) uint8.

    For sizes 3, 5 and 7 OpenCV then uses its fixed separable kernels [1 2 1] / 4,
    [1 4 6 4 1] / 16 and [2 7 14 18 14 7 2] / 64 (larger sizes: a Gaussian of sigma
    ``0.3 ((kernel - 1) / 2 - 1) + 0.8``)."""
    return cv2.GaussianBlur(image, (kernel, kernel), 0)


def brightness_contrast(image: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """albumentations' uint8 brightness / contrast: ``lut[v] = v alpha + 255 beta`` (float32),
    clipped to [0, 255] and truncated to uint8, applied per pixel and channel. (H, W, 3) uint8."""
    lut = np.arange(256, dtype=np.float32)
    lut *= np.float32(alpha)
    lut += np.float32(beta * 255.0)
    lut = np.clip(lut, 0.0, 255.0).astype(np.uint8)
    return lut[image]


def gauss_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Adds N(0, sigma) noise per pixel and channel in float32, clips to [0, 255] and truncates.

    The noise is ``np.random.default_rng(seed).standard_normal(image.shape, np.float32) * sigma``.

    Args:
      image: (H, W, 3) uint8.
      sigma: standard deviation in grey levels (training: sqrt(U[10, 50])).
      seed: seed of the noise pattern.

    Returns:
      (H, W, 3) uint8.
    """
    x = np.random.default_rng(seed).standard_normal(image.shape, np.float32)
    x *= np.float32(sigma)
    x += image
    np.clip(x, 0.0, 255.0, out=x)
    return x.astype(np.uint8)


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


def denormalize(image: np.ndarray) -> np.ndarray:
    """The inverse of ``normalize`` for images that were uint8: (..., 3) float32 -> uint8 (rounded,
    exact for ``normalize`` of a uint8 image)."""
    x = (np.asarray(image, np.float32) + _NORM_OFFSET) / _NORM_SCALE
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Every random choice of one training example (module docstring).

    Attributes:
      k: loose-box factor (unused without a box).
      augmented: whether the sample was drawn for augmentation (u <= augment).
      geometric: one of ``GEOMETRIC_OPS`` (``none`` when not augmented).
      shift: (kx, ky) of ``shifted_box`` (``shift`` only).
      window: (left, top, width, height) of the ``scale`` window in the S x S image
        (``random_resized_crop_window``; ``scale`` only).
      opencv_resize: whether the photometric step resizes with OpenCV (r in 1..3).
      photometric: the op of ``PHOTOMETRIC_OPS`` that acts, or ``none``.
      blur_kernel: ``blur`` kernel size, 3, 5 or 7.
      alpha: ``brightness_contrast`` contrast multiplier.
      beta: ``brightness_contrast`` brightness offset, in units of 255.
      noise_sigma: ``noise`` standard deviation, grey levels.
      noise_seed: ``noise`` pattern seed (``gauss_noise``).
    """

    k: float
    augmented: bool = False
    geometric: str = "none"
    shift: tuple[float, float] = (0.0, 0.0)
    window: tuple[int, int, int, int] | None = None
    opencv_resize: bool = False
    photometric: str = "none"
    blur_kernel: int = 0
    alpha: float = 1.0
    beta: float = 0.0
    noise_sigma: float = 0.0
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.geometric not in GEOMETRIC_OPS:
            raise ValueError(f"geometric must be one of {GEOMETRIC_OPS}, got {self.geometric!r}")
        if self.photometric not in (*PHOTOMETRIC_OPS, "none"):
            raise ValueError(
                f"photometric must be one of {(*PHOTOMETRIC_OPS, 'none')}, got {self.photometric!r}"
            )
        if (self.geometric == "scale") != (self.window is not None):
            raise ValueError("window is given exactly when geometric is 'scale'")
        if self.photometric != "none" and not self.opencv_resize:
            raise ValueError("a photometric op acts only after the OpenCV resize")
        if self.photometric == "blur" and self.blur_kernel not in (3, 5, 7):
            raise ValueError(f"blur_kernel must be 3, 5 or 7, got {self.blur_kernel}")


def sample_augment_params(
    rng: np.random.Generator, *, augment: float, flip: bool, has_box: bool, size: int
) -> AugmentParams:
    """Draws the random choices of one training example from ``rng`` (module docstring).

    Args:
      rng: the record's generator (grain gives one per record, fixed by seed and position).
      augment: probability in [0, 1] of augmenting (a geometric op and a photometric step).
      flip: whether ``flip`` is one of the geometric ops.
      has_box: whether the record has a face box (300W-LP, DAD); without one (BIWI face crops)
        there is no ``shift``.
      size: target side S, pixels (the ``scale`` window is drawn in the S x S image).
    """
    if not 0.0 <= augment <= 1.0:
        raise ValueError(f"augment must be a probability in [0, 1], got {augment}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    k0, k1 = TRAIN_K_RANGE
    k = float(rng.random()) * (k1 - k0) + k0
    if not (augment > 0.0 and rng.random() <= augment):
        return AugmentParams(k=k)
    ops = GEOMETRIC_OPS if has_box else FACE_CROP_GEOMETRIC_OPS
    if not flip:
        ops = ops[1:]
    params: dict = {"k": k, "augmented": True, "geometric": ops[int(rng.integers(len(ops)))]}
    if params["geometric"] == "shift":
        kx, ky = (rng.random(2) * (2 * SHIFT_FRACTION) - SHIFT_FRACTION).tolist()
        params["shift"] = (kx, ky)
    elif params["geometric"] == "scale":
        params["window"] = random_resized_crop_window(rng, size)
    step = int(rng.integers(1, PHOTOMETRIC_STEPS + 1))
    if step > len(PHOTOMETRIC_OPS):
        return AugmentParams(**params)
    params["opencv_resize"] = True
    if rng.random() >= PHOTOMETRIC_P:
        return AugmentParams(**params)
    op = params["photometric"] = PHOTOMETRIC_OPS[step - 1]
    if op == "blur":
        kernel = int(rng.integers(BLUR_KERNEL_RANGE[0], BLUR_KERNEL_RANGE[1] + 1))
        params["blur_kernel"] = kernel + 1 if kernel % 2 == 0 else kernel
    elif op == "brightness_contrast":
        params["alpha"] = 1.0 + float(rng.uniform(-CONTRAST_LIMIT, CONTRAST_LIMIT))
        params["beta"] = float(rng.uniform(-BRIGHTNESS_LIMIT, BRIGHTNESS_LIMIT))
    else:
        params["noise_sigma"] = math.sqrt(float(rng.uniform(*NOISE_VAR_RANGE)))
        params["noise_seed"] = int(rng.integers(2**63))
    return AugmentParams(**params)


def photometric(image: np.ndarray, params: AugmentParams) -> np.ndarray:
    """The photometric op of ``params`` on an (H, W, 3) uint8 image (the image itself for
    ``none``)."""
    if params.photometric == "blur":
        return gaussian_blur(image, params.blur_kernel)
    if params.photometric == "brightness_contrast":
        return brightness_contrast(image, params.alpha, params.beta)
    if params.photometric == "noise":
        return gauss_noise(image, params.noise_sigma, params.noise_seed)
    return image


def augment_image(image: np.ndarray, box, params: AugmentParams, size: int) -> np.ndarray:
    """The training image of ``params`` before normalisation (module docstring, steps 1-4).

    Args:
      image: (H, W, 3) uint8 RGB.
      box: (4,) tight face box (x_min, y_min, x_max, y_max) in pixels, or None for a face crop
        (BIWI: no loose box, no crop, no ``shift``).
      params: the random choices (``sample_augment_params``).
      size: output side S, pixels.

    Returns:
      (S, S, 3) uint8 RGB.
    """
    region = Image.fromarray(image)
    if box is None:
        if params.geometric == "shift":
            raise ValueError("a face crop without a box has no 'shift' augmentation")
    else:
        base = loose_box(box, params.k)
        if params.geometric == "shift":
            base = shifted_box(base, *params.shift)
        region = crop(region, base)
    if params.geometric == "flip":
        region = region.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif params.geometric == "scale":
        region = resized_crop(resize(region, size), params.window, size)
    if params.opencv_resize:
        return photometric(opencv_resize(np.asarray(region), size), params)
    return np.asarray(resize(region, size))


def augment_angles(pose, params: AugmentParams) -> np.ndarray:
    """(3,) degrees (yaw, pitch, roll) -> float32, yaw and roll negated by a ``flip``."""
    angles = np.asarray(pose, np.float32).reshape(3).copy()
    if params.geometric == "flip":
        angles[[0, 2]] *= -1.0
    return angles


def augment_example(
    image: np.ndarray, box, pose, params: AugmentParams, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One training example: ``augment_image``, normalised, and ``augment_angles``.

    Args:
      image: (H, W, 3) uint8 RGB.
      box: (4,) tight face box in pixels, or None for a face crop.
      pose: (3,) degrees (yaw, pitch, roll).
      params: the random choices (``sample_augment_params``).
      size: output side S, pixels.

    Returns:
      ``(image, angles)``: (S, S, 3) float32 normalised, and (3,) float32 degrees
      (yaw, pitch, roll).
    """
    return normalize(augment_image(image, box, params, size)), augment_angles(pose, params)
