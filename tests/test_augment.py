"""The training augmentation: its draws over thousands of samples against the original's
probabilities and parameter distributions, and its ops on small synthetic images.

The expected values are the original's (hpe_jax.data.transforms docstring): augmented with
probability ``augment``; geometric ops uniform (flip / shift / scale / none with a box, flip /
scale / none without; flip only when enabled); photometric step r uniform over 1..4, OpenCV
resize for r <= 3, the op acting with probability 0.5; blur kernels 3 / 5 / 7 with probability
0.2 / 0.4 / 0.4; alpha - 1, beta ~ U[-0.2, 0.2]; noise variance ~ U[10, 50]; k ~ U[0.2, 0.4);
shift kx, ky ~ U[-0.1, 0.1); scale windows as torchvision's RandomResizedCrop.
Frequencies are checked within 5 binomial standard deviations, distributions with KS p > 1e-4,
all with fixed seeds.
"""

from __future__ import annotations

import io
import random
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from hpe_jax.data import pipeline
from hpe_jax.data import transforms as T
from hpe_jax.testing import original_augment as ref

SIGMAS = 5.0
MIN_P = 1e-4
SIZE = 224


def assert_rate(count: int, n: int, p: float, what: str) -> None:
    """``count`` of ``n`` within SIGMAS binomial standard deviations of ``n p``."""
    sd = np.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= SIGMAS * max(sd, 0.5), f"{what}: {count}/{n}, expected p {p}"


def assert_uniform(values, low: float, high: float, what: str) -> None:
    """All ``values`` in [low, high) and distributed as U[low, high) (KS)."""
    values = np.asarray(values, np.float64)
    assert values.min() >= low and values.max() < high, what
    p = stats.kstest(values, stats.uniform(low, high - low).cdf).pvalue
    assert p > MIN_P, f"{what}: KS p {p}"


def draw(n: int, seed: int, **kwargs) -> list[T.AugmentParams]:
    rng = np.random.default_rng(seed)
    return [T.sample_augment_params(rng, **kwargs) for _ in range(n)]


@pytest.mark.parametrize(
    ("has_box", "flip", "ops"),
    [
        (True, True, ("flip", "shift", "scale", "none")),
        (True, False, ("shift", "scale", "none")),
        (False, True, ("flip", "scale", "none")),
        (False, False, ("scale", "none")),
    ],
)
def test_op_frequencies(has_box, flip, ops):
    n = 4000
    params = draw(n, 1, augment=0.5, flip=flip, has_box=has_box, size=SIZE)
    augmented = [p for p in params if p.augmented]
    assert_rate(len(augmented), n, 0.5, "augmented")
    assert all(p == T.AugmentParams(k=p.k) for p in params if not p.augmented)
    geometric = Counter(p.geometric for p in augmented)
    assert set(geometric) == set(ops)
    for op in ops:
        assert_rate(geometric[op], len(augmented), 1 / len(ops), op)
    m = len(augmented)
    assert_rate(sum(p.opencv_resize for p in augmented), m, 3 / 4, "OpenCV resize")
    photometric = Counter(p.photometric for p in augmented)
    for op in T.PHOTOMETRIC_OPS:
        assert_rate(photometric[op], m, 1 / 8, op)
    assert_rate(photometric["none"], m, 5 / 8, "no photometric op")


def test_augment_probability_edges_and_errors():
    assert not any(p.augmented for p in draw(500, 2, augment=0.0, flip=True, has_box=True, size=8))
    assert all(p.augmented for p in draw(500, 2, augment=1.0, flip=True, has_box=True, size=8))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="augment"):
        T.sample_augment_params(rng, augment=1.5, flip=True, has_box=True, size=8)
    with pytest.raises(ValueError, match="size"):
        T.sample_augment_params(rng, augment=0.5, flip=True, has_box=True, size=0)


def test_parameter_distributions():
    params = draw(20000, 3, augment=1.0, flip=True, has_box=True, size=SIZE)
    assert_uniform([p.k for p in params], 0.2, 0.4, "k")
    shifts = np.array([p.shift for p in params if p.geometric == "shift"])
    assert_uniform(shifts[:, 0], -0.1, 0.1, "kx")
    assert_uniform(shifts[:, 1], -0.1, 0.1, "ky")
    assert np.all(np.array([p.shift for p in params if p.geometric != "shift"]) == 0)
    blur = Counter(p.blur_kernel for p in params if p.photometric == "blur")
    for kernel, prob in ((3, 0.2), (5, 0.4), (7, 0.4)):
        assert_rate(blur[kernel], blur.total(), prob, f"blur kernel {kernel}")
    assert set(blur) == {3, 5, 7}
    bc = [p for p in params if p.photometric == "brightness_contrast"]
    assert_uniform([p.alpha for p in bc], 0.8, 1.2, "alpha")
    assert_uniform([p.beta for p in bc], -0.2, 0.2, "beta")
    noise = [p for p in params if p.photometric == "noise"]
    assert_uniform([p.noise_sigma**2 for p in noise], 10.0, 50.0, "noise variance")
    assert len({p.noise_seed for p in noise}) == len(noise)


@pytest.mark.parametrize("size", [SIZE, 16])
def test_scale_windows_are_redrawn_not_clipped(size):
    """Windows of the sampler against torchvision's get_params (the reference, Python's random):
    same side distributions, same share of full-side windows, all inside the image."""
    n = 5000
    rng = np.random.default_rng(4)
    ours = np.array([T.random_resized_crop_window(rng, size) for _ in range(n)])
    draw_ref = random.Random(5)
    theirs = np.array([ref.rrc_params(draw_ref, size) for _ in range(n)])[:, [1, 0, 3, 2]]
    left, top, w, h = ours.T
    assert np.all((w > 0) & (h > 0) & (left >= 0) & (top >= 0))
    assert np.all((left + w <= size) & (top + h <= size))
    area = w * h / size**2
    slack = 2.0 / size  # rounding of each side
    assert area.min() >= 0.8 - 2 * slack and area.max() <= 1.0 + 2 * slack
    ratio = w / h
    assert np.all((ratio >= 3 / 4 - 2 * slack) & (ratio <= 4 / 3 + 2 * slack))
    for side in (2, 3):
        p = stats.ks_2samp(ours[:, side], theirs[:, side]).pvalue
        assert p > MIN_P, f"side {side}: KS p {p}"
    full = (w == size) | (h == size)
    full_ref = (theirs[:, 2] == size) | (theirs[:, 3] == size)
    assert 0 < full.sum() < n
    assert_rate(int(full.sum()), n, full_ref.mean(), "full-side windows")
    for k in (2, 3):  # placement: uniform over the free range, both ends reached
        free = size - ours[:, k] - ours[:, k - 2]
        assert np.any((ours[:, k - 2] == 0) & (free > 0)) and np.any(free == 0)


def test_shifted_box_uses_the_truncated_centre():
    # Centre (20.5, 40.5) truncated to (20, 40); w = 21, h = 41; kx = 0.1, ky = -0.1:
    # new centre (22.1, 35.9) -> (11.6, 15.4, 32.6, 56.4).
    np.testing.assert_allclose(
        T.shifted_box((10.0, 20.0, 31.0, 61.0), 0.1, -0.1), [11.6, 15.4, 32.6, 56.4], atol=1e-12
    )
    # Negative centre: int() truncates toward zero (-2.5 -> -2).
    np.testing.assert_allclose(T.shifted_box((-5.0, 0.0, 0.0, 2.0), 0.0, 0.0), [-4.5, 0, 0.5, 2])


def test_normalize_round_trip():
    values = np.arange(256, dtype=np.uint8)
    image = np.stack([values, values[::-1], np.roll(values, 7)], axis=-1)[None]
    np.testing.assert_array_equal(T.denormalize(T.normalize(image)), image)
    expected = (np.float32(100) / 255 - T.IMAGENET_MEAN) / T.IMAGENET_STD
    np.testing.assert_allclose(
        T.normalize(np.full((1, 1, 3), 100, np.uint8))[0, 0], expected, rtol=1e-5
    )


def test_flip_mirrors_the_crop_and_negates_yaw_and_roll():
    image = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    box, pose = (5.0, 12.0, 24.0, 33.0), (30.5, -12.25, 7.0)
    plain = T.AugmentParams(k=0.3, augmented=True)
    flipped = T.AugmentParams(k=0.3, augmented=True, geometric="flip")
    img_a, ang_a = T.augment_example(image, box, pose, plain, 16)
    img_b, ang_b = T.augment_example(image, box, pose, flipped, 16)
    np.testing.assert_array_equal(img_b, img_a[:, ::-1])
    assert not np.array_equal(img_a, img_b)
    np.testing.assert_array_equal(ang_a, [30.5, -12.25, 7.0])
    np.testing.assert_array_equal(ang_b, [-30.5, -12.25, -7.0])


def test_face_crops_are_never_cropped_or_shifted():
    image = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    whole = np.asarray(Image.fromarray(image).resize((8, 8), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(T.augment_image(image, None, T.AugmentParams(k=0.4), 8), whole)
    with pytest.raises(ValueError, match="shift"):
        T.augment_image(image, None, T.AugmentParams(k=0.3, geometric="shift"), 8)


def test_params_are_checked():
    with pytest.raises(ValueError, match="geometric"):
        T.AugmentParams(k=0.2, geometric="crop")
    with pytest.raises(ValueError, match="window"):
        T.AugmentParams(k=0.2, geometric="scale")
    with pytest.raises(ValueError, match="OpenCV resize"):
        T.AugmentParams(k=0.2, photometric="noise")
    with pytest.raises(ValueError, match="blur_kernel"):
        T.AugmentParams(k=0.2, opencv_resize=True, photometric="blur", blur_kernel=4)


def _record(box) -> dict:
    """A source element as the TFDS datasets give it (``hpe_jax.data.source.record`` reads it)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((24, 20, 3), 90, np.uint8)).save(buf, "PNG")
    element = {
        "name": b"r",
        "image": buf.getvalue(),
        "pose": np.array([10.0, 20.0, -30.0], np.float32),
        "rotation": np.eye(3, dtype=np.float32),
    }
    return element if box is None else {**element, "box": np.asarray(box, np.float32)}


@pytest.mark.parametrize(("box", "flip_rate"), [((4.0, 6.0, 16.0, 20.0), 1 / 8), (None, 1 / 6)])
def test_train_transform_flip_rate(box, flip_rate):
    """End to end through the grain map (one generator per record): flips negate yaw and roll in
    augment / number of geometric ops of the samples."""
    raw = _record(None if box is None else np.asarray(box))
    transform = pipeline.TrainTransform(target_size=8, augment=0.5, flip=True)
    rng = np.random.default_rng(6)
    angles = np.array([transform.random_map(raw, rng)["angles"] for _ in range(2000)])
    flipped = angles[:, 0] < 0
    np.testing.assert_array_equal(angles[flipped], [[-10.0, 20.0, 30.0]] * int(flipped.sum()))
    assert_rate(int(flipped.sum()), len(angles), flip_rate, "flips")
    no_flip = pipeline.TrainTransform(target_size=8, augment=1.0, flip=False)
    assert all(no_flip.random_map(raw, rng)["angles"][0] == 10.0 for _ in range(100))
