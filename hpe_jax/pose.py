"""Angle coding, loss, rotations and metrics of the original head-pose network.

All angles are in degrees and ordered (yaw, pitch, roll) unless a docstring says otherwise.

Label coding (MODEL.md, "Angles"): ten coarse bins of 20 degrees starting at -100, and a
shift label counting whole degrees from the start of the coarse bin. The original computes

    ten_bins = np.arange(-100, 81, 20)                 # [-100, -80, ..., 80]
    coarse = np.digitize(angle, ten_bins) - 1
    shift = int(angle - ten_bins[coarse])              # torch.LongTensor: truncation toward 0

Rotation convention (DATA.md): ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``, right-handed, i.e.
scipy ``Rotation.from_euler('xyz', [pitch, yaw, roll], degrees=True)``.

``encode_bins``, ``rotation_from_euler``, ``euler_from_rotation``, ``mae``, ``wrapped_mae``,
``maev`` and ``geodesic`` accept numpy arrays (and return numpy, never touching JAX, so
data-loader workers can call them) as well as JAX arrays (returning JAX arrays, usable under
``jax.jit``).
``decode_logits``, ``decode_angles`` and ``pose_loss`` are JAX-only.
"""

from collections.abc import Sequence
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

ANGLE_MIN = -100.0
BIN_WIDTH = 20.0
NUM_COARSE_BINS = 10
NUM_SHIFT_BINS = 20

ANGLE_NAMES = ("yaw", "pitch", "roll")


def _xp(x: object) -> ModuleType:
    """Return ``jax.numpy`` for JAX arrays (tracers included), ``numpy`` for anything else."""
    return jnp if isinstance(x, jax.Array) else np


def _as_float(x, xp: ModuleType):
    """``x`` as an ``xp`` array with a floating dtype (integers become the default float)."""
    a = xp.asarray(x)
    return a if xp.issubdtype(a.dtype, xp.floating) else a.astype(float)


def _check_trailing(a, shape: tuple[int, ...], func: str, arg: str) -> None:
    if a.ndim < len(shape) or tuple(a.shape[-len(shape) :]) != shape:
        expected = ", ".join(["..."] + [str(s) for s in shape])
        raise ValueError(f"{func}: {arg} must have shape ({expected}), got {tuple(a.shape)}")


def encode_bins(angles):
    """Coarse-bin and shift labels of angles in degrees, exactly as the original computes them.

    Args:
        angles: array of any shape, degrees (numpy or JAX).

    Returns:
        ``(coarse, shift)``, int32 arrays of ``angles``' shape (numpy in -> numpy out,
        JAX in -> JAX out). For angles in [-100, 100): ``coarse = floor((a + 100) / 20)`` in
        0..9 and ``shift = trunc(a - (-100 + 20 * coarse))`` in 0..19, e.g. 37.5 -> (6, 17),
        -100 -> (0, 0), -0.01 -> (4, 19), 99.9 -> (9, 19).

    Edge behaviour of the original formula (``np.digitize`` with bins [-100, ..., 80]):
    angles below -100 get coarse -1, and the original's ``ten_bins[-1]`` then wraps to the
    LAST bin start, 80 (so -100.5 -> (-1, -180)); angles >= 100 stay in coarse bin 9 with a
    shift >= 20 (100 -> (9, 20)); NaN lands in bin 9. Such labels are outside the classes of
    the heads and make the original's CrossEntropyLoss fail, so for numpy input this function
    raises ValueError on any angle outside [-100, 100) or not finite. JAX input cannot be
    checked under tracing: it gets the raw formula above, wrap-around included; filter first.
    """
    xp = _xp(angles)
    if xp is np:
        a = np.asarray(angles, dtype=np.float64)
        bad = ~(np.isfinite(a) & (a >= ANGLE_MIN) & (a < -ANGLE_MIN))
        if bad.any():
            raise ValueError(
                f"encode_bins: angles must be finite and in [{ANGLE_MIN}, {-ANGLE_MIN}) degrees "
                f"to get valid labels (coarse 0..{NUM_COARSE_BINS - 1}, shift "
                f"0..{NUM_SHIFT_BINS - 1}); {int(bad.sum())} of {a.size} are not, "
                f"e.g. {a[bad].ravel()[:5].tolist()}"
            )
    else:
        a = _as_float(angles, xp)
    bin_starts = ANGLE_MIN + BIN_WIDTH * xp.arange(NUM_COARSE_BINS, dtype=a.dtype)
    coarse = xp.digitize(a, bin_starts) - 1
    shift = xp.trunc(a - bin_starts[coarse])
    return coarse.astype(xp.int32), shift.astype(xp.int32)


def rotation_from_euler(angles):
    """Rotation matrices ``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` of Euler angles.

    Args:
        angles: (..., 3) degrees, order (yaw, pitch, roll) (numpy or JAX).

    Returns:
        (..., 3, 3) rotation matrices, same array library as the input.
    """
    xp = _xp(angles)
    a = _as_float(angles, xp)
    _check_trailing(a, (3,), "rotation_from_euler", "angles")
    rad = xp.deg2rad(a)
    cy, sy = xp.cos(rad[..., 0]), xp.sin(rad[..., 0])
    cp, sp = xp.cos(rad[..., 1]), xp.sin(rad[..., 1])
    cr, sr = xp.cos(rad[..., 2]), xp.sin(rad[..., 2])
    rows = (
        (cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp),
        (sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp),
        (-sy, cy * sp, cy * cp),
    )
    return xp.stack([xp.stack(row, axis=-1) for row in rows], axis=-2)


def euler_from_rotation(rot):
    """Euler angles of rotation matrices, the inverse of ``rotation_from_euler``.

    ``pitch = atan2(R21, R22)``, ``yaw = atan2(-R20, sqrt(R00^2 + R10^2))``,
    ``roll = atan2(R10, R00)``; yaw is in [-90, 90], pitch and roll in (-180, 180].

    Args:
        rot: (..., 3, 3) rotation matrices (numpy or JAX).

    Returns:
        (..., 3) degrees, order (yaw, pitch, roll), same array library as the input.
    """
    xp = _xp(rot)
    m = _as_float(rot, xp)
    _check_trailing(m, (3, 3), "euler_from_rotation", "rot")
    pitch = xp.arctan2(m[..., 2, 1], m[..., 2, 2])
    yaw = xp.arctan2(-m[..., 2, 0], xp.sqrt(m[..., 0, 0] ** 2 + m[..., 1, 0] ** 2))
    roll = xp.arctan2(m[..., 1, 0], m[..., 0, 0])
    return xp.rad2deg(xp.stack([yaw, pitch, roll], axis=-1))


def decode_logits(coarse_logits: jax.Array, shift_logits: jax.Array) -> jax.Array:
    """Expected angle of one angle's head outputs (JAX).

    ``20 * sum(softmax(coarse) * [0..9]) - 100 + sum(softmax(shift) * [0..19])``, in float32.

    Args:
        coarse_logits: (..., 10) logits of the coarse bins.
        shift_logits: (..., 20) logits of the shift bins.

    Returns:
        (...) float32 degrees.
    """
    _check_trailing(coarse_logits, (NUM_COARSE_BINS,), "decode_logits", "coarse_logits")
    _check_trailing(shift_logits, (NUM_SHIFT_BINS,), "decode_logits", "shift_logits")
    coarse = jax.nn.softmax(jnp.asarray(coarse_logits, jnp.float32), axis=-1)
    shift = jax.nn.softmax(jnp.asarray(shift_logits, jnp.float32), axis=-1)
    coarse_idx = jnp.arange(NUM_COARSE_BINS, dtype=jnp.float32)
    shift_idx = jnp.arange(NUM_SHIFT_BINS, dtype=jnp.float32)
    return (
        BIN_WIDTH * jnp.sum(coarse * coarse_idx, axis=-1)
        + ANGLE_MIN
        + jnp.sum(shift * shift_idx, axis=-1)
    )


def _check_outputs(outputs: Sequence[jax.Array], func: str) -> None:
    if len(outputs) != 2 * len(ANGLE_NAMES):
        raise ValueError(
            f"{func}: outputs must be the 6 head outputs (yaw_coarse, yaw_shift, pitch_coarse, "
            f"pitch_shift, roll_coarse, roll_shift), got {len(outputs)}"
        )


def decode_angles(outputs: Sequence[jax.Array]) -> jax.Array:
    """Angles decoded from the six head outputs of the network (JAX).

    Args:
        outputs: (yaw_coarse, yaw_shift, pitch_coarse, pitch_shift, roll_coarse, roll_shift)
            logits of shapes (N, 10) / (N, 20), the original forward's order.

    Returns:
        (N, 3) float32 degrees, order (yaw, pitch, roll).
    """
    _check_outputs(outputs, "decode_angles")
    return jnp.stack(
        [decode_logits(outputs[2 * i], outputs[2 * i + 1]) for i in range(len(ANGLE_NAMES))],
        axis=-1,
    )


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean over the batch of the softmax cross-entropy, as torch's CrossEntropyLoss."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)
    return -jnp.mean(picked)


def pose_loss(
    outputs: Sequence[jax.Array],
    coarse_labels: jax.Array,
    shift_labels: jax.Array,
    angles: jax.Array,
    alpha: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Training loss of the original (JAX), computed in float32.

    Per angle: ``CE(coarse) + CE(shift) + alpha * mean(min((p - t)^2, (360 - (p - t))^2))``
    with CE averaged over the batch and ``p`` the decoded angle (``decode_logits``), ``t`` the
    true angle; the total is the sum over yaw, pitch and roll.

    Args:
        outputs: the six head outputs, see ``decode_angles``; (N, 10) / (N, 20) logits, any
            float dtype (bfloat16 is upcast).
        coarse_labels: (N, 3) int coarse bins 0..9, order (yaw, pitch, roll).
        shift_labels: (N, 3) int shift bins 0..19, order (yaw, pitch, roll).
        angles: (N, 3) degrees, order (yaw, pitch, roll).
        alpha: weight of the regression term.

    Returns:
        ``(total, per_angle)``: a float32 scalar and a dict with float32 scalars under
        'yaw', 'pitch' and 'roll'.
    """
    _check_outputs(outputs, "pose_loss")
    n = outputs[0].shape[0]
    for name, arr in (
        ("coarse_labels", coarse_labels),
        ("shift_labels", shift_labels),
        ("angles", angles),
    ):
        if tuple(arr.shape) != (n, len(ANGLE_NAMES)):
            raise ValueError(f"pose_loss: {name} must have shape ({n}, 3), got {arr.shape}")
    angles = jnp.asarray(angles, jnp.float32)
    per_angle = {}
    for i, name in enumerate(ANGLE_NAMES):
        coarse_logits = jnp.asarray(outputs[2 * i], jnp.float32)
        shift_logits = jnp.asarray(outputs[2 * i + 1], jnp.float32)
        diff = decode_logits(coarse_logits, shift_logits) - angles[:, i]
        reg = jnp.mean(jnp.minimum(diff**2, (360.0 - diff) ** 2))
        per_angle[name] = (
            _cross_entropy(coarse_logits, coarse_labels[:, i])
            + _cross_entropy(shift_logits, shift_labels[:, i])
            + alpha * reg
        )
    total = per_angle["yaw"] + per_angle["pitch"] + per_angle["roll"]
    return total, per_angle


def mae(pred, gt):
    """Absolute angle errors, plain ``|pred - gt|`` (no wrap-around), as the original's test.

    Args:
        pred, gt: (..., 3) degrees, order (yaw, pitch, roll) (numpy or JAX).

    Returns:
        (..., 3) degrees, same array library as ``pred``.
    """
    xp = _xp(pred)
    p, g = _as_float(pred, xp), _as_float(gt, xp)
    _check_trailing(p, (3,), "mae", "pred")
    _check_trailing(g, (3,), "mae", "gt")
    return xp.abs(p - g)


def wrapped_mae(pred, gt):
    """Absolute angle errors as the original's validation during training measures them: per
    angle the smallest of ``|d|``, ``|d + 360|``, ``|d - 360|``, ``|d + 180|``, ``|d - 180|``
    with ``d = pred - gt`` (a half turn counts as no error).

    Args:
        pred, gt: (..., 3) degrees, order (yaw, pitch, roll) (numpy or JAX).

    Returns:
        (..., 3) degrees, same array library as ``pred``.
    """
    xp = _xp(pred)
    d = mae(pred, gt)
    return xp.minimum(xp.minimum(d, xp.abs(d - 360.0)), xp.abs(d - 180.0))


ANGLE_ERRORS = {"plain": mae, "wrapped": wrapped_mae}


def _check_rotation_pair(r_pred, r_gt, func: str) -> None:
    _check_trailing(r_pred, (3, 3), func, "r_pred")
    _check_trailing(r_gt, (3, 3), func, "r_gt")
    if r_pred.shape != r_gt.shape:
        raise ValueError(
            f"{func}: r_pred and r_gt must have the same shape, got {r_pred.shape} and {r_gt.shape}"
        )


def maev(r_pred, r_gt):
    """Mean angle between corresponding axis vectors of two rotations (MAEV), in degrees.

    Uses the ROWS of the matrices, as 6DRepNet-family code does (``R[:, i]`` on batched
    (B, 3, 3) tensors selects row i of every matrix): for each row i, the angle between
    ``r_gt[i]`` and ``r_pred[i]``, averaged over the three rows. The angle is
    ``atan2(|a x b|, a . b)``, which equals ``acos(clip(a . b, -1, 1))`` for unit vectors but
    stays accurate near 0 and 180 degrees, where ``acos`` of a rounded cosine cannot resolve
    angles below about 1e-6 degrees.

    Args:
        r_pred, r_gt: (..., 3, 3) rotation matrices of the same shape (numpy or JAX).

    Returns:
        (...) degrees, same array library as ``r_pred``.
    """
    xp = _xp(r_pred)
    p, g = _as_float(r_pred, xp), _as_float(r_gt, xp)
    _check_rotation_pair(p, g, "maev")
    sin = xp.linalg.norm(xp.cross(p, g), axis=-1)
    cos = xp.sum(p * g, axis=-1)
    return xp.mean(xp.rad2deg(xp.arctan2(sin, cos)), axis=-1)


def geodesic(r_pred, r_gt):
    """Geodesic distance between rotations: the rotation angle of ``M = r_pred r_gt^T``.

    ``acos((tr(M) - 1) / 2)`` in exact arithmetic; computed as ``atan2(sin, cos)`` with
    ``cos = (tr(M) - 1) / 2`` and ``sin`` = half the norm of the skew part's axis vector
    ``(M21 - M12, M02 - M20, M10 - M01)``, which stays accurate for angles near 0 (``acos`` of
    a trace that is 1 to within rounding cannot resolve angles below about 1e-6 degrees, and the
    result would depend on the floating-point library). Angles in [0, 180].

    Args:
        r_pred, r_gt: (..., 3, 3) rotation matrices of the same shape (numpy or JAX).

    Returns:
        (...) degrees, same array library as ``r_pred``.
    """
    xp = _xp(r_pred)
    p, g = _as_float(r_pred, xp), _as_float(r_gt, xp)
    _check_rotation_pair(p, g, "geodesic")
    m = p @ xp.swapaxes(g, -1, -2)
    axis = xp.stack(
        [
            m[..., 2, 1] - m[..., 1, 2],
            m[..., 0, 2] - m[..., 2, 0],
            m[..., 1, 0] - m[..., 0, 1],
        ],
        axis=-1,
    )
    sin = 0.5 * xp.linalg.norm(axis, axis=-1)
    cos = 0.5 * (xp.trace(m, axis1=-2, axis2=-1) - 1.0)
    return xp.rad2deg(xp.arctan2(sin, cos))
