"""The training augmentation on the real 300W-LP and AFLW2000 samples against the independent
reference (hpe_jax.testing.original_augment), skipped when the samples are absent.

(a) With fixed draws, each op of ``augment_image`` equals the reference step: exactly where both
use PIL or plain arithmetic, within one grey level where the reference re-implements OpenCV's
fixed-point resize and blur in numpy. (b) Held out: 2000 samples of each sampler on the 300W-LP
record cannot be told apart by op frequencies, brightness, sharpness and flip rate, while a
sampler whose photometric ops act twice as often can.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from hpe_jax.data import transforms as T
from hpe_jax.testing import augment_stats
from hpe_jax.testing import original_augment as ref

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
LP = SAMPLES / "300W_LP" / "IBUG_image_008_1_0"
AFLW_IMAGE = SAMPLES / "AFLW2000" / "image00050.jpg"
SIZE = 224

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} not found")


@pytest.fixture(scope="module")
def lp() -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """The 300W-LP image (H, W, 3) uint8, its tight box from pt2d, pose (yaw, pitch, roll) deg."""
    mat = scipy.io.loadmat(f"{LP}.mat")
    pt2d = mat["pt2d"]
    box = (pt2d[0].min(), pt2d[1].min(), pt2d[0].max(), pt2d[1].max())
    pose = np.degrees(mat["Pose_Para"][0, [1, 0, 2]].astype(np.float64))
    return np.asarray(Image.open(f"{LP}.jpg").convert("RGB")), box, pose


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def test_geometric_ops_equal_the_reference(lp):
    image, box, _ = lp
    pil = Image.fromarray(image)
    k = 0.3125
    loose = ref.loose(box, k)
    crop = ref.int_crop(pil, loose)
    cases = {
        T.AugmentParams(k=k): crop,
        T.AugmentParams(k=k, augmented=True, geometric="flip"): crop.transpose(
            Image.Transpose.FLIP_LEFT_RIGHT
        ),
        T.AugmentParams(k=k, augmented=True, geometric="shift", shift=(0.0731, -0.0942)): (
            ref.int_crop(pil, ref.shift_box(loose, 0.0731, -0.0942))
        ),
        T.AugmentParams(k=k, augmented=True, geometric="scale", window=(13, 2, 199, 215)): (
            ref.scale(crop, SIZE, (2, 13, 215, 199))
        ),
    }
    for params, expected in cases.items():
        out = T.augment_image(image, box, params, SIZE)
        np.testing.assert_array_equal(out, np.asarray(ref.pil_resize(expected, SIZE)), str(params))
    # The shift is about the truncated centre; about the exact one, this crop is a pixel off.
    dx = 0.0731 * (loose[2] - loose[0])
    exact_centre = (loose[0] + dx, loose[1], loose[2] + dx, loose[3])
    shifted = T.AugmentParams(k=k, augmented=True, geometric="shift", shift=(0.0731, 0.0))
    untruncated = np.asarray(ref.pil_resize(ref.int_crop(pil, exact_centre), SIZE))
    assert _max_diff(T.augment_image(image, box, shifted, SIZE), untruncated) > 10


def test_opencv_resize_step_equals_the_reference(lp):
    image, box, _ = lp
    crop = np.asarray(ref.int_crop(Image.fromarray(image), ref.loose(box, 0.25)))
    params = T.AugmentParams(k=0.25, augmented=True, opencv_resize=True)
    out = T.augment_image(image, box, params, SIZE)
    assert _max_diff(out, ref.linear_resize(crop, SIZE)) <= 1
    # It is not the antialiased PIL resize of the un-augmented path.
    assert _max_diff(out, np.asarray(ref.pil_resize(Image.fromarray(crop), SIZE))) > 10


def test_photometric_ops_equal_the_reference(lp):
    image, box, _ = lp
    base = dict(k=0.25, augmented=True, geometric="flip", opencv_resize=True)
    resized = T.augment_image(image, box, T.AugmentParams(**base), SIZE)
    for kernel in (3, 5, 7):
        params = T.AugmentParams(**base, photometric="blur", blur_kernel=kernel)
        out = T.augment_image(image, box, params, SIZE)
        assert _max_diff(out, ref.blur(resized, kernel)) <= 1, kernel
        assert _max_diff(out, resized) > 10
    for alpha, beta in ((1.17, -0.13), (0.83, 0.19), (1.0, 0.0)):
        params = T.AugmentParams(**base, photometric="brightness_contrast", alpha=alpha, beta=beta)
        out = T.augment_image(image, box, params, SIZE)
        np.testing.assert_array_equal(out, ref.brightness_contrast(resized, alpha, beta))
    sigma, seed = 5.5, 1234
    params = T.AugmentParams(**base, photometric="noise", noise_sigma=sigma, noise_seed=seed)
    noise = np.random.default_rng(seed).standard_normal(resized.shape, np.float32) * sigma
    out = T.augment_image(image, box, params, SIZE)
    np.testing.assert_array_equal(out, ref.add_noise(resized, noise))
    assert np.any(out != resized)


def test_face_crop_ops_equal_the_reference():
    """A box-less record (as BIWI's face crops): the whole image, no crop."""
    image = np.asarray(Image.open(AFLW_IMAGE).convert("RGB"))[40:300, 60:280]
    pil = Image.fromarray(image)
    cases = {
        T.AugmentParams(k=0.2): pil,
        T.AugmentParams(k=0.2, augmented=True, geometric="flip"): pil.transpose(
            Image.Transpose.FLIP_LEFT_RIGHT
        ),
        T.AugmentParams(k=0.2, augmented=True, geometric="scale", window=(0, 20, 224, 183)): (
            ref.scale(pil, SIZE, (20, 0, 183, 224))
        ),
    }
    for params, expected in cases.items():
        out = T.augment_image(image, None, params, SIZE)
        np.testing.assert_array_equal(out, np.asarray(ref.pil_resize(expected, SIZE)), str(params))
    resized = T.AugmentParams(k=0.2, augmented=True, opencv_resize=True)
    assert (
        _max_diff(T.augment_image(image, None, resized, SIZE), ref.linear_resize(image, SIZE)) <= 1
    )


def test_samples_cannot_be_told_from_the_original(lp):
    image, box, pose = lp
    size, n = 64, 2000
    ours = augment_stats.transform_log(image, box, pose, size=size, num=n, seed=11)
    result = augment_stats.compare(
        ours, augment_stats.original_log(image, box, pose, size=size, num=n, seed=12)
    )
    assert augment_stats.min_p(result) > 1e-4, result
    assert abs(result["flip_rate"]["a"]["True"] - 1 / 8) < 0.04
    # The comparison can tell: photometric ops acting on every photometric step (1/4 each).
    doubled = augment_stats.original_log(
        image, box, pose, size=size, num=n, seed=13, photometric_p=1.0
    )
    assert augment_stats.min_p(augment_stats.compare(ours, doubled)) < 1e-6
