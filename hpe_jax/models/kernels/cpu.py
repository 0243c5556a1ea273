"""The ``"cpu"`` kernel set: the forms of the network's operations that XLA:CPU runs fastest.

- Depthwise convs are sums of strided slices times the taps, with a hand-written gradient
  (``_shifted_sum_bwd``) in place of XLA:CPU's grouped convolution.
- A 1x1 stride-1 conv is one matmul (``_pointwise_conv``) in place of a 1x1 convolution.
- Training-mode BatchNorm has a hand-written gradient (``_batch_norm_bwd``) in place of the
  autodiff of the two-pass statistics.

What each form is worth on XLA:CPU is measured in BENCHMARKS.md.

Jit the network with ``compiler_options=hpe_jax.compiler_options.compiler_options("cpu")``, which
keeps XLA:CPU's remaining convolutions (and their gradients) off YNNPACK.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hpe_jax.models.kernels import xla


def _windows(
    padded: jax.Array, kh: int, kw: int, out_h: int, out_w: int, stride: int
) -> list[jax.Array]:
    """The kh * kw strided (N, out_h, out_w, C) windows of ``padded`` that tap (a, b) of a
    kh x kw filter reads, in row-major tap order."""
    n, _, _, channels = padded.shape
    return [
        jax.lax.slice(
            padded,
            (0, a, b, 0),
            (n, a + (out_h - 1) * stride + 1, b + (out_w - 1) * stride + 1, channels),
            (1, stride, stride, 1),
        )
        for a in range(kh)
        for b in range(kw)
    ]


def _weighted_sum(windows: list[jax.Array], kernel: jax.Array) -> jax.Array:
    """sum over taps of window * kernel[a, b]; ``kernel`` (kh, kw, C)."""
    kw = kernel.shape[1]
    out = windows[0] * kernel[0, 0]
    for i, window in enumerate(windows[1:], start=1):
        out = out + window * kernel[i // kw, i % kw]
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Depthwise conv as the sum of kh * kw strided slices of the padded input times the taps;
    its gradient is ``_shifted_sum_bwd``.

    Args:
      x: (N, H, W, C) input.
      kernel: (kh, kw, C) per-channel taps.
      stride: spatial stride; padding is symmetric, (k - 1) // 2, no bias.
    Returns:
      (N, H', W', C) output in ``x``'s dtype, H' = ceil(H / stride) for odd k.
    """
    kh, kw, _ = kernel.shape
    _, h, w, _ = x.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    out_h = (h + 2 * ph - kh) // stride + 1
    out_w = (w + 2 * pw - kw) // stride + 1
    padded = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    return _weighted_sum(_windows(padded, kh, kw, out_h, out_w, stride), kernel)


def _shifted_sum_fwd(x, kernel, stride):
    return depthwise_conv(x, kernel, stride), (x, kernel)


def _shifted_sum_bwd(stride, residuals, g):
    """Both gradients read one padded copy of the output gradient ``g``, dilated by ``stride``
    (``g_padded``; window (a, b) of it meets tap (kh-1-a, kw-1-b) of every input pixel):
    ``g_x`` is the stride-1 shifted sum of ``g_padded`` with the flipped kernel, and the kernel
    gradient of tap (a, b) is sum(x * window) over N, H, W: one variadic reduction over W per
    kernel row (its kw taps together), then a small sum over N and H. Autodiff of the forward
    instead copies kh * kw shifted windows of x and reduces each separately. The single padded
    copy makes XLA materialise ``g`` once rather than recompute its producer for every tap
    (measured effect: BENCHMARKS.md, "What the CPU-specific code paths are worth"). Products
    and sums in float32 whatever the compute dtype."""
    x, kernel = residuals
    kh, kw, channels = kernel.shape
    _, h, w, _ = x.shape
    _, out_h, out_w, _ = g.shape
    low_h, low_w = kh - 1 - (kh - 1) // 2, kw - 1 - (kw - 1) // 2
    g_padded = jax.lax.pad(
        g,
        jnp.zeros((), g.dtype),
        (
            (0, 0, 0),
            (low_h, h + kh - 1 - low_h - ((out_h - 1) * stride + 1), stride - 1),
            (low_w, w + kw - 1 - low_w - ((out_w - 1) * stride + 1), stride - 1),
            (0, 0, 0),
        ),
    )
    windows = _windows(g_padded, kh, kw, h, w, 1)
    g_x = _weighted_sum(windows, kernel[::-1, ::-1])
    xf = x.astype(jnp.float32)
    products = [xf * window.astype(jnp.float32) for window in windows]
    row_sums = []
    for a in range(kh):
        row_sums += jax.lax.reduce(
            products[a * kw : (a + 1) * kw],
            [np.float32(0)] * kw,
            lambda u, v: [p + q for p, q in zip(u, v, strict=True)],
            (2,),
        )
    g_kernel = jnp.stack([jnp.sum(r, axis=(0, 1)) for r in row_sums]).reshape(kh, kw, channels)
    return g_x, g_kernel[::-1, ::-1].astype(kernel.dtype)


depthwise_conv.defvjp(_shifted_sum_fwd, _shifted_sum_bwd)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _no_padding(padding: Sequence[tuple[int, int]]) -> bool:
    return all(tuple(p) == (0, 0) for p in padding)


def _pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 1x1, stride-1 NHWC conv as one (N*H*W, in) x (in, out) matmul; its gradients are
    matmuls too."""
    n, h, w, cin = x.shape
    cout = kernel.shape[-1]
    return jnp.dot(x.reshape(-1, cin), kernel.reshape(cin, cout)).reshape(n, h, w, cout)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: jax.lax.ConvDimensionNumbers | None = None,
    feature_group_count: int = 1,
    precision: jax.lax.PrecisionLike = None,
    **kwargs,
) -> jax.Array:
    """``jax.lax.conv_general_dilated``, except that a 1x1 stride-1 unpadded NHWC/HWIO conv is
    one matmul (``_pointwise_conv``)."""
    pointwise = (
        rhs.shape[:2] == (1, 1)
        and tuple(window_strides) == (1, 1)
        and not isinstance(padding, str)
        and _no_padding(padding)
        and tuple(lhs_dilation or (1, 1)) == (1, 1)
        and feature_group_count == 1
        and precision is None
        and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
        and kwargs.get("out_sharding") is None
        and "preferred_element_type" not in kwargs
    )
    if pointwise:
        return _pointwise_conv(lhs, rhs)
    return jax.lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        precision=precision,
        **kwargs,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(
    x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``xla.batch_norm_train`` (same arguments and results) with the gradient written out
    (``_batch_norm_bwd``)."""
    return xla.batch_norm_train(x, scale, bias, epsilon)


def _batch_norm_fwd(x, scale, bias, epsilon):
    y, mean, var = xla.batch_norm_train(x, scale, bias, epsilon)
    return (y, mean, var), (x, mean, jax.lax.rsqrt(var + epsilon), scale)


def _batch_norm_bwd(epsilon, residuals, cotangents):
    del epsilon
    x, mean, inv, scale = residuals
    g_y, g_mean, g_var = cotangents
    axes = tuple(range(x.ndim - 1))
    count = math.prod(x.shape[:-1])
    centred = x - mean
    x_hat = centred * inv
    g_bias = jnp.sum(g_y, axis=axes)
    g_scale = jnp.sum(g_y * x_hat, axis=axes)
    g_x = (scale * inv) * (g_y - g_bias / count - x_hat * (g_scale / count))
    g_x = g_x + g_mean / count + centred * (2.0 / count * g_var)
    return g_x, g_scale, g_bias


batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd)
