"""The ``"xla"`` kernel set: the network as XLA compiles it for GPUs and TPUs. Depthwise convs
are grouped convolutions, every dense conv (1x1 included) is XLA's convolution, and the
BatchNorm gradient comes from autodiff."""

from __future__ import annotations

import jax
import jax.numpy as jnp

conv_general_dilated = jax.lax.conv_general_dilated


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Depthwise conv as ``lax.conv_general_dilated`` with ``feature_group_count = C``.

    Args:
      x: (N, H, W, C) input.
      kernel: (kh, kw, C) per-channel taps.
      stride: spatial stride; padding is symmetric, (k - 1) // 2, no bias.
    Returns:
      (N, H', W', C) output in ``x``'s dtype, H' = ceil(H / stride) for odd k.
    """
    kh, kw, channels = kernel.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    return jax.lax.conv_general_dilated(
        x,
        kernel.reshape(kh, kw, 1, channels),
        window_strides=(stride, stride),
        padding=((ph, ph), (pw, pw)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )


def batch_norm_train(
    x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode batch norm over all axes but the last (two-pass statistics).

    Args:
      x: (..., C) float32 input.
      scale, bias: (C,) affine parameters.
      epsilon: added to the variance.
    Returns:
      ``(y, mean, var)``: the normalised (..., C) output, the (C,) batch mean and the (C,) biased
      batch variance, float32.
    """
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean), axis=axes)
    mul = jax.lax.rsqrt(var + epsilon) * scale
    return x * mul + (bias - mean * mul), mean, var
