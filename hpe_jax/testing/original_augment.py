"""An independent implementation of the original's training-time sampling, for tests and
benchmarks of ``hpe_jax.data.transforms``.

Written from the description of the original's dataset code (its 300W-LP / DAD-3DHeads and BIWI
classes with albumentations 1.3.1, torchvision on PIL images and OpenCV), not from
``hpe_jax.data.transforms``, which it does not import. ``OriginalSampler`` draws as the original
does: Python's ``random`` for the op choices and albumentations' parameters, numpy's
``RandomState`` for k, the augmentation draw and the shift, a third generator standing in for
torch's in ``RandomResizedCrop``. torchvision's resizes of PIL images are PIL's bilinear resize;
the OpenCV steps (INTER_LINEAR resize, Gaussian blur) are plain numpy here, within one grey level
of OpenCV's fixed-point arithmetic.

Images are (H, W, 3) uint8 RGB arrays or PIL images; boxes (x_min, y_min, x_max, y_max) pixels;
angles degrees (yaw, pitch, roll).
"""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
from PIL import Image


def loose(box, k: float) -> tuple[float, float, float, float]:
    """The loose box: x_min, y_min, x_max, y_max moved one after another, each from the box as it
    is at that moment."""
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    x_min -= 0.6 * k * abs(x_max - x_min)
    y_min -= 2 * k * abs(y_max - y_min)
    x_max += 0.6 * k * abs(x_max - x_min)
    y_max += 0.6 * k * abs(y_max - y_min)
    return x_min, y_min, x_max, y_max


def int_crop(image: Image.Image, box) -> Image.Image:
    """PIL crop of the box with each coordinate passed through ``int()``."""
    return image.crop(tuple(int(v) for v in box))


def shift_box(box, kx: float, ky: float) -> tuple[float, float, float, float]:
    """Same width and height, centred at the truncated centre plus (w kx, h ky)."""
    x_min, y_min, x_max, y_max = box
    mid_x, mid_y = int((x_max + x_min) / 2), int((y_max + y_min) / 2)
    width, height = x_max - x_min, y_max - y_min
    new_x, new_y = mid_x + width * kx, mid_y + height * ky
    return new_x - width / 2, new_y - height / 2, new_x + width / 2, new_y + height / 2


def pil_resize(image: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize((size, size))`` of a PIL image."""
    return image.resize((size, size), Image.Resampling.BILINEAR)


def rrc_params(draw: random.Random, size: int) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop(size, scale=(0.8, 1), ratio=(3/4, 4/3)).get_params`` on a
    ``size`` x ``size`` image: (top, left, height, width)."""
    area = size * size
    lo, hi = math.log(3 / 4), math.log(4 / 3)
    for _ in range(10):
        target = area * draw.uniform(0.8, 1.0)
        aspect = math.exp(draw.uniform(lo, hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= size and 0 < h <= size:
            top = draw.randint(0, size - h)
            left = draw.randint(0, size - w)
            return top, left, h, w
    return 0, 0, size, size


def scale(image: Image.Image, size: int, params: tuple[int, int, int, int]) -> Image.Image:
    """``Resize((size, size))`` then the ``RandomResizedCrop`` window (top, left, h, w), resized."""
    top, left, h, w = params
    square = pil_resize(image, size)
    return pil_resize(square.crop((left, top, left + w, top + h)), size)


def linear_resize(image: np.ndarray, size: int) -> np.ndarray:
    """OpenCV INTER_LINEAR to (size, size): source coordinate ``(d + 0.5) in / out - 0.5``,
    clamped to the image, two-tap linear weights, no antialias; rounded to uint8."""

    def taps(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = (np.arange(size) + 0.5) * (n_in / size) - 0.5
        f0 = np.floor(f)
        w = f - f0
        i0 = np.clip(f0.astype(int), 0, n_in - 1)
        i1 = np.clip(f0.astype(int) + 1, 0, n_in - 1)
        return i0, i1, w

    x = image.astype(np.float64)
    r0, r1, wr = taps(x.shape[0])
    x = x[r0] * (1 - wr)[:, None, None] + x[r1] * wr[:, None, None]
    c0, c1, wc = taps(x.shape[1])
    x = x[:, c0] * (1 - wc)[None, :, None] + x[:, c1] * wc[None, :, None]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# OpenCV's getGaussianKernel with sigma <= 0 and an odd size <= 7 returns these fixed kernels (its
# small_gaussian_tab), not the Gaussian of its derived sigma 0.3 ((k - 1) / 2 - 1) + 0.8.
OPENCV_SMALL_KERNELS = {
    3: np.array([1, 2, 1]) / 4,
    5: np.array([1, 4, 6, 4, 1]) / 16,
    7: np.array([2, 7, 14, 18, 14, 7, 2]) / 64,
}


def blur(image: np.ndarray, ksize: int) -> np.ndarray:
    """OpenCV ``GaussianBlur(ksize, sigma 0)`` for ksize 3, 5, 7: the separable
    ``OPENCV_SMALL_KERNELS`` kernel, reflect-101 border; rounded to uint8."""
    kernel = OPENCV_SMALL_KERNELS[ksize]
    r = ksize // 2
    x = np.pad(image.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
    h, w = image.shape[:2]
    x = sum(kernel[i] * x[i : i + h] for i in range(ksize))
    x = sum(kernel[i] * x[:, i : i + w] for i in range(ksize))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def brightness_contrast(image: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Lookup table ``v alpha + 255 beta`` in float32, clipped, truncated, indexed per pixel."""
    table = np.arange(0, 256).astype("float32") * alpha + beta * 255
    table = np.clip(table, 0, 255).astype(np.uint8)
    return table[image]


def add_noise(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``image + noise`` in float32, clipped to [0, 255], truncated to uint8."""
    total = image.astype(np.float32) + noise.astype(np.float32)
    return np.clip(total, 0, 255).astype(np.uint8)


@dataclasses.dataclass
class Draw:
    """What one ``OriginalSampler.sample`` chose.

    Attributes:
      augmented: u <= augment.
      geometric: ``flip``, ``shift``, ``scale`` or ``none``.
      resized: the photometric step resized with OpenCV (r in 1..3).
      photometric: ``blur``, ``brightness_contrast``, ``noise`` (the op that acted) or ``none``.
      value: the op's parameter: blur kernel, (alpha, beta), or noise sigma; None otherwise.
    """

    augmented: bool = False
    geometric: str = "none"
    resized: bool = False
    photometric: str = "none"
    value: object = None


class OriginalSampler:
    """The original's ``__getitem__`` image and angle path for one fixed record.

    Args:
      size: target side S.
      augment: augmentation probability.
      flip: whether flips are among the geometric ops.
      seed: seeds the three generators.
      photometric_p: probability that an op of the photometric step acts (the original's 0.5;
        other values give a deliberately different sampler, to check that comparisons can tell).
    """

    def __init__(
        self, size: int, augment: float, flip: bool, seed: int, photometric_p: float = 0.5
    ):
        self.size, self.augment, self.flip, self.p = size, augment, flip, photometric_p
        self.py = random.Random(seed)
        self.np = np.random.RandomState(seed)
        self.torch = random.Random(seed + 1)

    def _photometric(self, image: Image.Image, draw: Draw) -> Image.Image:
        r = self.py.randint(1, 4)
        if r > 3:
            return image
        x = linear_resize(np.array(image), self.size)
        draw.resized = True
        if self.py.random() < self.p:
            if r == 1:
                k = self.py.randrange(3, 8)
                k = (k + 1) % 8 if k % 2 == 0 else k
                x, draw.value = blur(x, k), k
            elif r == 2:
                alpha = 1.0 + self.py.uniform(-0.2, 0.2)
                beta = self.py.uniform(-0.2, 0.2)
                x, draw.value = brightness_contrast(x, alpha, beta), (alpha, beta)
            else:
                sigma = self.py.uniform(10, 50) ** 0.5
                state = np.random.RandomState(self.py.randint(0, 2**32 - 1))
                x = add_noise(x, state.normal(0.0, sigma, x.shape))
                draw.value = sigma
            draw.photometric = ("blur", "brightness_contrast", "noise")[r - 1]
        return Image.fromarray(x)

    def sample(self, image: np.ndarray, box, pose) -> tuple[np.ndarray, np.ndarray, Draw]:
        """One training image of the record (``box`` None: a BIWI face crop).

        Returns:
          ((S, S, 3) uint8 image before normalisation, (3,) float64 degrees after any flip,
          the ``Draw``).
        """
        img = Image.fromarray(image)
        yaw, pitch, roll = (float(v) for v in pose)
        draw = Draw()
        face_box = None if box is None else loose(box, self.np.random_sample() * 0.2 + 0.2)
        if self.np.random_sample() <= self.augment and self.augment > 0:
            draw.augmented = True
            if face_box is None:
                ops = ("flip", "scale", "none")
                op = ops[self.py.randint(1, 3) - 1] if self.flip else ops[self.py.randint(2, 3) - 1]
            else:
                ops = ("flip", "shift", "scale", "none")
                op = ops[self.py.randint(1, 4) - 1] if self.flip else ops[self.py.randint(2, 4) - 1]
            draw.geometric = op
            if op == "shift":
                kx = self.np.random_sample() * 0.2 - 0.1
                ky = self.np.random_sample() * 0.2 - 0.1
                face_box = shift_box(face_box, kx, ky)
            if face_box is not None:
                img = int_crop(img, face_box)
            if op == "flip":
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                yaw, roll = -yaw, -roll
            elif op == "scale":
                img = scale(img, self.size, rrc_params(self.torch, self.size))
            img = self._photometric(img, draw)
        elif face_box is not None:
            img = int_crop(img, face_box)
        return np.asarray(pil_resize(img, self.size)), np.array([yaw, pitch, roll]), draw
