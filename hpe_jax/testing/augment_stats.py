"""Two-sample comparison of augmented training samples: op frequencies, brightness, sharpness and
flip rate of two samplers (e.g. ``hpe_jax.data.transforms`` against
``hpe_jax.testing.original_augment``) on the same record.

Each sampler's output is summarised per sample in a ``SampleLog``; ``compare`` tests the two
logs: Kolmogorov-Smirnov for brightness and sharpness, chi-square tests of homogeneity for the
op frequencies and the flip rate. Large p-values: the two cannot be told apart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import stats

NOT_AUGMENTED = "not augmented"


def brightness(image: np.ndarray) -> float:
    """Mean grey level of an (H, W, 3) uint8 image, 0..255."""
    return float(np.asarray(image, np.float64).mean())


def sharpness(image: np.ndarray) -> float:
    """Mean absolute 4-neighbour Laplacian of the channel-mean image (interior pixels), grey
    levels: high for sharp or noisy images, low for blurred ones."""
    g = np.asarray(image, np.float64).mean(axis=2)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(np.abs(lap).mean())


@dataclasses.dataclass
class SampleLog:
    """Per-sample summaries of one sampler's output."""

    brightness: list[float] = dataclasses.field(default_factory=list)
    sharpness: list[float] = dataclasses.field(default_factory=list)
    flipped: list[bool] = dataclasses.field(default_factory=list)
    geometric: list[str] = dataclasses.field(default_factory=list)
    photometric: list[str] = dataclasses.field(default_factory=list)

    def add(
        self, image: np.ndarray, *, flipped: bool, augmented: bool, geometric: str, photometric: str
    ) -> None:
        """Records one (S, S, 3) uint8 sample, whether its angles were flipped, and its ops
        (``geometric`` counted as ``NOT_AUGMENTED`` when not augmented)."""
        self.brightness.append(brightness(image))
        self.sharpness.append(sharpness(image))
        self.flipped.append(bool(flipped))
        self.geometric.append(geometric if augmented else NOT_AUGMENTED)
        self.photometric.append(photometric)


def _frequencies(a: list, b: list) -> dict[str, Any]:
    labels = sorted(set(a) | set(b), key=str)
    counts = np.array([[x.count(v) for v in labels] for x in (a, b)])
    p = float(stats.chi2_contingency(counts, correction=False).pvalue) if len(labels) > 1 else 1.0
    return {
        "a": {str(v): c / len(a) for v, c in zip(labels, counts[0], strict=True)},
        "b": {str(v): c / len(b) for v, c in zip(labels, counts[1], strict=True)},
        "p": p,
    }


def _distributions(a: list[float], b: list[float]) -> dict[str, float]:
    test = stats.ks_2samp(a, b)
    return {
        "mean_a": float(np.mean(a)),
        "mean_b": float(np.mean(b)),
        "ks": float(test.statistic),
        "p": float(test.pvalue),
    }


def compare(a: SampleLog, b: SampleLog) -> dict[str, dict[str, Any]]:
    """Tests whether two logs come from the same sampler.

    Returns:
      ``brightness`` and ``sharpness``: means, KS statistic and p-value; ``flip_rate``,
      ``geometric`` and ``photometric``: per-label frequencies of a and b and the chi-square
      p-value.
    """
    return {
        "brightness": _distributions(a.brightness, b.brightness),
        "sharpness": _distributions(a.sharpness, b.sharpness),
        "flip_rate": _frequencies(a.flipped, b.flipped),
        "geometric": _frequencies(a.geometric, b.geometric),
        "photometric": _frequencies(a.photometric, b.photometric),
    }


def min_p(result: dict[str, dict[str, Any]]) -> float:
    """The smallest p-value of a ``compare`` result."""
    return min(entry["p"] for entry in result.values())


def transform_log(
    image: np.ndarray,
    box: Any,
    pose: np.ndarray,
    *,
    size: int,
    num: int,
    seed: int,
) -> SampleLog:
    """``num`` training samples of ``hpe_jax.data.transforms`` (augmentation 0.5, flips on, a
    record with a face box) of one (H, W, 3) uint8 image, its box (x0, y0, x1, y1) pixels and
    pose (yaw, pitch, roll) degrees, drawn with ``seed``, at ``size`` pixels."""
    from hpe_jax.data import transforms

    log = SampleLog()
    rng = np.random.default_rng(seed)
    for _ in range(num):
        params = transforms.sample_augment_params(
            rng, augment=0.5, flip=True, has_box=True, size=size
        )
        out = transforms.augment_image(image, box, params, size)
        angles = transforms.augment_angles(pose, params)
        log.add(
            out,
            flipped=bool(angles[0] * pose[0] < 0),
            augmented=params.augmented,
            geometric=params.geometric,
            photometric=params.photometric,
        )
    return log


def original_log(
    image: np.ndarray,
    box: Any,
    pose: np.ndarray,
    *,
    size: int,
    num: int,
    seed: int,
    **sampler_options: Any,
) -> SampleLog:
    """``num`` samples of the original's sampling (``original_augment.OriginalSampler``,
    augmentation 0.5, flips on, ``sampler_options`` passed on) of the same inputs as
    ``transform_log``."""
    from hpe_jax.testing.original_augment import OriginalSampler

    log = SampleLog()
    sampler = OriginalSampler(size, 0.5, True, seed, **sampler_options)
    for _ in range(num):
        out, angles, draw = sampler.sample(image, box, pose)
        log.add(
            out,
            flipped=bool(angles[0] * pose[0] < 0),
            augmented=draw.augmented,
            geometric=draw.geometric,
            photometric=draw.photometric,
        )
    return log
