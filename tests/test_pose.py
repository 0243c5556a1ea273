"""Tests of hpe_jax.pose: label coding, decoding, loss, rotations and metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hpe_jax import pose

# (angle, coarse, shift) worked out by hand from digitize(a, [-100, -80, ..., 80]) - 1
# and trunc(a - bin_start).
EDGE_CASES = [
    (-100.0, 0, 0),
    (-99.5, 0, 0),
    (-99.0, 0, 1),
    (-80.0, 1, 0),
    (-0.01, 4, 19),
    (0.0, 5, 0),
    (37.5, 6, 17),
    (79.99, 8, 19),
    (80.0, 9, 0),
    (99.0, 9, 19),
    (99.9, 9, 19),
]


def test_encode_bins_hand_values_numpy():
    angles = np.array([a for a, _, _ in EDGE_CASES])
    coarse, shift = pose.encode_bins(angles)
    assert isinstance(coarse, np.ndarray) and isinstance(shift, np.ndarray)
    assert coarse.dtype == np.int32 and shift.dtype == np.int32
    np.testing.assert_array_equal(coarse, [c for _, c, _ in EDGE_CASES])
    np.testing.assert_array_equal(shift, [s for _, _, s in EDGE_CASES])


def test_encode_bins_jax_matches_numpy_and_keeps_shape():
    angles = np.array([a for a, _, _ in EDGE_CASES], dtype=np.float32).reshape(-1, 1)
    coarse, shift = pose.encode_bins(jnp.asarray(angles))
    assert isinstance(coarse, jax.Array) and coarse.dtype == jnp.int32
    assert coarse.shape == angles.shape and shift.shape == angles.shape
    ref_coarse, ref_shift = pose.encode_bins(angles)
    np.testing.assert_array_equal(np.asarray(coarse), ref_coarse)
    np.testing.assert_array_equal(np.asarray(shift), ref_shift)


def test_encode_bins_matches_original_formula_on_random_angles():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-100.0, 100.0, size=(500, 3))
    coarse, shift = pose.encode_bins(angles)
    ten_bins = np.arange(-100, 81, 20)
    ref_coarse = np.digitize(angles, ten_bins) - 1
    ref_shift = torch.LongTensor((angles - ten_bins[ref_coarse]).tolist()).numpy()
    np.testing.assert_array_equal(coarse, ref_coarse)
    np.testing.assert_array_equal(shift, ref_shift)
    assert coarse.min() >= 0 and coarse.max() <= 9
    assert shift.min() >= 0 and shift.max() <= 19


@pytest.mark.parametrize("bad", [-100.5, 100.0, 150.0, np.nan, np.inf])
def test_encode_bins_numpy_rejects_angles_without_valid_labels(bad):
    with pytest.raises(ValueError, match=r"\[-100.0, 100.0\)"):
        pose.encode_bins(np.array([10.0, bad]))


def test_encode_bins_jax_out_of_range_follows_original_formula():
    # Below -100 digitize gives bin -1 and ten_bins[-1] wraps to 80; >= 100 stays in bin 9.
    coarse, shift = pose.encode_bins(jnp.array([-100.5, 100.0, 150.0]))
    np.testing.assert_array_equal(np.asarray(coarse), [-1, 9, 9])
    np.testing.assert_array_equal(np.asarray(shift), [-180, 20, 70])


def _peaked(index: int, size: int, height: float = 60.0) -> jnp.ndarray:
    return jnp.zeros(size).at[index].set(height)


def test_decode_logits_one_hot_gives_bin_angle():
    angle = pose.decode_logits(_peaked(6, 10), _peaked(17, 20))
    np.testing.assert_allclose(float(angle), 37.0, atol=1e-4)
    batch = pose.decode_logits(
        jnp.stack([_peaked(0, 10), _peaked(9, 10)]), jnp.stack([_peaked(0, 20), _peaked(19, 20)])
    )
    np.testing.assert_allclose(np.asarray(batch), [-100.0, 99.0], atol=1e-4)


def test_decode_logits_uniform_gives_expectation():
    # 20 * 4.5 - 100 + 9.5 = -0.5
    angle = pose.decode_logits(jnp.zeros(10), jnp.zeros(20))
    np.testing.assert_allclose(float(angle), -0.5, atol=1e-5)


def test_decode_angles_order_and_shape():
    outputs = (
        jnp.stack([_peaked(6, 10)] * 2),
        jnp.stack([_peaked(17, 20)] * 2),
        jnp.stack([_peaked(2, 10)] * 2),
        jnp.stack([_peaked(3, 20)] * 2),
        jnp.stack([_peaked(5, 10)] * 2),
        jnp.stack([_peaked(0, 20)] * 2),
    )
    angles = pose.decode_angles(outputs)
    assert angles.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(angles), [[37.0, -57.0, 0.0]] * 2, atol=1e-4)
    with pytest.raises(ValueError, match="6 head outputs"):
        pose.decode_angles(outputs[:4])


def _random_case(n: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = []
    for _ in range(3):
        logits.append(rng.normal(scale=2.0, size=(n, 10)).astype(np.float32))
        logits.append(rng.normal(scale=2.0, size=(n, 20)).astype(np.float32))
    angles = rng.uniform(-99.0, 99.0, size=(n, 3)).astype(np.float32)
    coarse, shift = pose.encode_bins(angles)
    return logits, coarse, shift, angles


def _numpy_loss(logits, coarse, shift, angles, alpha):
    def log_softmax(x):
        x = x.astype(np.float64)
        m = x.max(axis=1, keepdims=True)
        return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))

    out = {}
    for i, name in enumerate(("yaw", "pitch", "roll")):
        lc, ls = log_softmax(logits[2 * i]), log_softmax(logits[2 * i + 1])
        ce_c = -np.mean(lc[np.arange(len(lc)), coarse[:, i]])
        ce_s = -np.mean(ls[np.arange(len(ls)), shift[:, i]])
        p = 20 * (np.exp(lc) @ np.arange(10)) - 100 + np.exp(ls) @ np.arange(20)
        d = p - angles[:, i]
        out[name] = ce_c + ce_s + alpha * np.mean(np.minimum(d**2, (360 - d) ** 2))
    return out


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_pose_loss_matches_direct_numpy(alpha):
    logits, coarse, shift, angles = _random_case()
    total, per_angle = pose.pose_loss(
        [jnp.asarray(x) for x in logits],
        jnp.asarray(coarse),
        jnp.asarray(shift),
        jnp.asarray(angles),
        alpha=alpha,
    )
    ref = _numpy_loss(logits, coarse, shift, angles, alpha)
    assert set(per_angle) == {"yaw", "pitch", "roll"}
    for name in ref:
        np.testing.assert_allclose(float(per_angle[name]), ref[name], rtol=1e-5)
    np.testing.assert_allclose(float(total), sum(ref.values()), rtol=1e-5)
    assert total.dtype == jnp.float32


def test_pose_loss_cross_entropy_matches_torch():
    logits, coarse, shift, angles = _random_case(seed=1)
    _, per_angle = pose.pose_loss(
        [jnp.asarray(x) for x in logits],
        jnp.asarray(coarse),
        jnp.asarray(shift),
        jnp.asarray(angles),
        alpha=0.0,
    )
    ce = torch.nn.functional.cross_entropy
    for i, name in enumerate(("yaw", "pitch", "roll")):
        expected = ce(torch.from_numpy(logits[2 * i]), torch.from_numpy(coarse[:, i]).long()) + ce(
            torch.from_numpy(logits[2 * i + 1]), torch.from_numpy(shift[:, i]).long()
        )
        np.testing.assert_allclose(float(per_angle[name]), expected.item(), rtol=1e-5)


def test_pose_loss_hand_case_and_bfloat16():
    # Uniform logits: CE = log 10 + log 20, decoded angle -0.5; targets 9.5 and -190.5:
    # p - t = -10 and 190 -> terms min(100, 370^2) = 100 and min(190^2, 170^2) = 28900.
    n = 2
    outputs = [jnp.zeros((n, 10 if k % 2 == 0 else 20), jnp.bfloat16) for k in range(6)]
    angles = jnp.array([[9.5, 9.5, 9.5], [-190.5, -190.5, -190.5]])
    labels = jnp.zeros((n, 3), jnp.int32)
    total, per_angle = pose.pose_loss(outputs, labels, labels, angles)
    expected = np.log(10.0) + np.log(20.0) + (100.0 + 28900.0) / 2
    for name in ("yaw", "pitch", "roll"):
        assert per_angle[name].dtype == jnp.float32
        np.testing.assert_allclose(float(per_angle[name]), expected, rtol=1e-6)
    np.testing.assert_allclose(float(total), 3 * expected, rtol=1e-6)


def test_pose_loss_rejects_bad_label_shape():
    logits, coarse, shift, angles = _random_case()
    with pytest.raises(ValueError, match="shift_labels must have shape"):
        pose.pose_loss([jnp.asarray(x) for x in logits], coarse, shift[:, :2], angles)


def test_pose_loss_under_jit():
    logits, coarse, shift, angles = _random_case()
    fn = jax.jit(lambda o, c, s, a: pose.pose_loss(o, c, s, a)[0])
    ref = sum(_numpy_loss(logits, coarse, shift, angles, 1.0).values())
    np.testing.assert_allclose(float(fn(logits, coarse, shift, angles)), ref, rtol=1e-5)


def test_rotation_matches_scipy():
    rng = np.random.default_rng(2)
    ypr = rng.uniform(-90.0, 90.0, size=(50, 3))
    R = pose.rotation_from_euler(ypr)
    assert isinstance(R, np.ndarray) and R.shape == (50, 3, 3)
    ref = Rotation.from_euler("xyz", ypr[:, [1, 0, 2]], degrees=True).as_matrix()
    np.testing.assert_allclose(R, ref, atol=1e-12)


def test_rotation_single_axes():
    yaw90 = pose.rotation_from_euler(np.array([90.0, 0.0, 0.0]))
    np.testing.assert_allclose(yaw90, [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-12)
    pitch90 = pose.rotation_from_euler(np.array([0.0, 90.0, 0.0]))
    np.testing.assert_allclose(pitch90, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    roll90 = pose.rotation_from_euler(np.array([0.0, 0.0, 90.0]))
    np.testing.assert_allclose(roll90, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


def test_euler_round_trip_numpy_and_jax():
    rng = np.random.default_rng(3)
    ypr = rng.uniform(-90.0, 90.0, size=(200, 3))
    back = pose.euler_from_rotation(pose.rotation_from_euler(ypr))
    assert isinstance(back, np.ndarray) and back.shape == (200, 3)
    np.testing.assert_allclose(back, ypr, atol=1e-4)
    ypr32 = jnp.asarray(ypr[np.abs(ypr[:, 0]) < 85.0], jnp.float32)
    back_jax = pose.euler_from_rotation(pose.rotation_from_euler(ypr32))
    assert isinstance(back_jax, jax.Array)
    np.testing.assert_allclose(np.asarray(back_jax), np.asarray(ypr32), atol=1e-3)


def test_euler_from_rotation_accepts_scipy_matrices():
    ypr = np.array([[30.0, -20.0, 10.0], [-60.0, 45.0, -75.0]])
    R = Rotation.from_euler("xyz", ypr[:, [1, 0, 2]], degrees=True).as_matrix()
    np.testing.assert_allclose(pose.euler_from_rotation(R), ypr, atol=1e-10)


def test_rotation_shape_errors():
    with pytest.raises(
        ValueError, match=r"rotation_from_euler: angles must have shape \(\.\.\., 3\)"
    ):
        pose.rotation_from_euler(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"euler_from_rotation: rot must have shape"):
        pose.euler_from_rotation(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="same shape"):
        pose.geodesic(np.zeros((2, 3, 3)), np.zeros((3, 3, 3)))


def test_mae_plain_absolute_difference():
    pred = np.array([[10.0, -170.0, 5.0]])
    gt = np.array([[-10.0, 170.0, 5.5]])
    err = pose.mae(pred, gt)
    assert isinstance(err, np.ndarray)
    np.testing.assert_allclose(err, [[20.0, 340.0, 0.5]])
    err_jax = pose.mae(jnp.asarray(pred), jnp.asarray(gt))
    assert isinstance(err_jax, jax.Array)
    np.testing.assert_allclose(np.asarray(err_jax), [[20.0, 340.0, 0.5]], atol=1e-5)


def test_wrapped_mae_is_the_smallest_of_five_differences():
    rng = np.random.default_rng(0)
    pred = rng.uniform(-720, 720, (200, 3))
    gt = rng.uniform(-100, 100, (200, 3))
    d = pred - gt
    direct = np.abs(np.stack([d, d + 360, d - 360, d + 180, d - 180])).min(0)
    np.testing.assert_allclose(pose.wrapped_mae(pred, gt), direct, atol=1e-9)
    # By hand: 20 -> 20; 340 -> 20 (one turn less); 181 -> 1 (a half turn); 540 -> 180.
    known = pose.wrapped_mae(np.array([[10.0, -170.0, 91.0]]), np.array([[-10.0, 170.0, -90.0]]))
    np.testing.assert_allclose(known, [[20.0, 20.0, 1.0]])
    np.testing.assert_allclose(pose.wrapped_mae(np.array([540.0, 0, 0]), np.zeros(3)), [180, 0, 0])
    err_jax = pose.wrapped_mae(jnp.asarray(pred), jnp.asarray(gt))
    assert isinstance(err_jax, jax.Array)
    np.testing.assert_allclose(np.asarray(err_jax), direct, atol=1e-3)
    assert set(pose.ANGLE_ERRORS) == {"plain", "wrapped"}


def test_geodesic_and_maev_known_rotations():
    eye = np.eye(3)
    roll90 = pose.rotation_from_euler(np.array([0.0, 0.0, 90.0]))
    yaw30 = pose.rotation_from_euler(np.array([30.0, 0.0, 0.0]))
    np.testing.assert_allclose(pose.geodesic(roll90, eye), 90.0, atol=1e-6)
    np.testing.assert_allclose(pose.geodesic(yaw30, eye), 30.0, atol=1e-6)
    np.testing.assert_allclose(pose.geodesic(eye, eye), 0.0, atol=1e-6)
    # 90 degrees about z: rows 0 and 1 turn by 90, row 2 stays -> mean 60.
    np.testing.assert_allclose(pose.maev(roll90, eye), 60.0, atol=1e-6)
    np.testing.assert_allclose(pose.maev(yaw30, eye), 20.0, atol=1e-6)


def test_geodesic_and_maev_resolve_tiny_and_half_turn_angles():
    # acos of a cosine that is 1 to within rounding returns 0 or ~1e-6 degrees, depending on the
    # floating-point library; the atan2 forms give the angle to full relative precision.
    for degrees in (1e-9, 3e-7, 1e-4):
        small = Rotation.from_rotvec(np.radians(degrees) * np.array([0.6, 0.0, 0.8])).as_matrix()
        np.testing.assert_allclose(pose.geodesic(small, np.eye(3)), degrees, rtol=1e-6)
        turned = Rotation.from_rotvec(np.radians(degrees) * np.array([1.0, 0.0, 0.0]))
        # About x: row 0 stays, rows 1 and 2 turn by the angle.
        np.testing.assert_allclose(
            pose.maev(turned.as_matrix(), np.eye(3)), 2 * degrees / 3, rtol=1e-6
        )
    half_turn = pose.rotation_from_euler(np.array([180.0, 0.0, 0.0]))
    np.testing.assert_allclose(pose.geodesic(half_turn, np.eye(3)), 180.0, atol=1e-9)


def test_maev_uses_rows_not_columns():
    # p g^T = a, so the row angles are acos(a_ii); the column angles differ.
    a = pose.rotation_from_euler(np.array([40.0, 0.0, 0.0]))
    b = pose.rotation_from_euler(np.array([0.0, 0.0, 40.0]))
    p, g = a @ b, b
    rows = np.mean(np.degrees(np.arccos(np.clip(np.sum(p * g, axis=1), -1, 1))))
    cols = np.mean(np.degrees(np.arccos(np.clip(np.sum(p * g, axis=0), -1, 1))))
    assert abs(rows - cols) > 1.0
    np.testing.assert_allclose(pose.maev(p, g), rows, atol=1e-9)
    # 6DRepNet-style batched indexing R[:, i] on (B, 3, 3) tensors.
    batch_p, batch_g = torch.from_numpy(p[None]), torch.from_numpy(g[None])
    six_d = np.mean(
        [
            torch.rad2deg(
                torch.acos(torch.clamp((batch_g[:, i] * batch_p[:, i]).sum(1), -1, 1))
            ).item()
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(pose.maev(p[None], g[None]), [six_d], atol=1e-9)


def test_metrics_batched_jax_and_numpy_agree():
    rng = np.random.default_rng(4)
    R1 = pose.rotation_from_euler(rng.uniform(-90, 90, size=(2, 5, 3)))
    R2 = pose.rotation_from_euler(rng.uniform(-90, 90, size=(2, 5, 3)))
    geo, mv = pose.geodesic(R1, R2), pose.maev(R1, R2)
    assert isinstance(geo, np.ndarray) and geo.shape == (2, 5) and mv.shape == (2, 5)
    relative = (R1 @ np.swapaxes(R2, -1, -2)).reshape(-1, 3, 3)
    ref = np.degrees(Rotation.from_matrix(relative).magnitude()).reshape(2, 5)
    np.testing.assert_allclose(geo, ref, atol=1e-6)
    geo_jax = pose.geodesic(jnp.asarray(R1, jnp.float32), jnp.asarray(R2, jnp.float32))
    mv_jax = pose.maev(jnp.asarray(R1, jnp.float32), jnp.asarray(R2, jnp.float32))
    assert isinstance(geo_jax, jax.Array) and isinstance(mv_jax, jax.Array)
    np.testing.assert_allclose(np.asarray(geo_jax), geo, atol=0.05)
    np.testing.assert_allclose(np.asarray(mv_jax), mv, atol=0.05)
