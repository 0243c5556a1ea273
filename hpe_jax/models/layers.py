"""Building blocks with PyTorch semantics: symmetric padding, BatchNorm with unbiased running
variance, depthwise and 2x2 transposed convolutions, and the original's initialisers. NHWC."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Initializer = Callable[..., jax.Array]


_INIT_CHUNK = 1 << 16


@jax.jit
def _normal_chunk(key: jax.Array, index: jax.Array) -> jax.Array:
    return jax.random.normal(jax.random.fold_in(key, index), (_INIT_CHUNK,), jnp.float32)


@jax.jit
def _uniform_chunk(key: jax.Array, index: jax.Array) -> jax.Array:
    return jax.random.uniform(jax.random.fold_in(key, index), (_INIT_CHUNK,), jnp.float32, -1, 1)


def _chunked_draw(chunk_fn: Callable[..., jax.Array], key: jax.Array, shape: tuple[int, ...]):
    """Random values of ``shape`` from fixed-size chunks, so that XLA compiles one program for
    every parameter shape (one compile per shape made a network's init take tens of seconds).
    Eagerly the chunks are joined in numpy; under tracing (``jit``, ``eval_shape``) in jax.numpy,
    with the same values."""
    size = math.prod(shape)
    chunks = [chunk_fn(key, i) for i in range(-(-size // _INIT_CHUNK))]
    if isinstance(key, jax.core.Tracer):
        return jnp.concatenate(chunks)[:size].reshape(shape)
    return np.concatenate([np.asarray(c) for c in chunks])[:size].reshape(shape)


def normal_init(stddev: float) -> Initializer:
    """Initializer drawing normal(0, stddev) values (float32 unless ``dtype`` says otherwise)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jnp.asarray(_chunked_draw(_normal_chunk, key, shape) * np.float32(stddev), dtype)

    return init


def uniform_init(bound: float) -> Initializer:
    """Initializer drawing uniform(-bound, bound) values."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jnp.asarray(_chunked_draw(_uniform_chunk, key, shape) * np.float32(bound), dtype)

    return init


def torch_conv_init(kernel_h: int, kernel_w: int, out_channels: int) -> Initializer:
    """The original's conv init: normal(0, sqrt(2 / (kh * kw * out)))."""
    return normal_init(math.sqrt(2.0 / (kernel_h * kernel_w * out_channels)))


def torch_default_uniform_init(fan_in: int) -> Initializer:
    """PyTorch's default init for modules the original leaves alone: U(-1/sqrt(fan_in), +)."""
    return uniform_init(1.0 / math.sqrt(fan_in))


def resolve_depthwise_impl(impl: str) -> str:
    """'auto' -> 'shifted_sum' on CPU (XLA's grouped conv is slow there), else 'grouped'."""
    if impl == "auto":
        return "shifted_sum" if jax.default_backend() == "cpu" else "grouped"
    if impl not in ("shifted_sum", "grouped"):
        raise ValueError(f"depthwise_impl must be 'auto', 'shifted_sum' or 'grouped', got {impl!r}")
    return impl


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int, impl: str) -> jax.Array:
    """Depthwise conv, symmetric padding (k - 1) // 2, no bias.

    Args:
      x: (N, H, W, C) input.
      kernel: (kh, kw, C) per-channel taps.
      stride: spatial stride.
      impl: 'shifted_sum' (sum of kh * kw strided slices of the padded input times the taps, with
        a hand-written gradient, ``_shifted_sum_bwd``; fast on XLA:CPU) or 'grouped'
        (``lax.conv_general_dilated`` with ``feature_group_count = C``).
    Returns:
      (N, H', W', C) output, H' = ceil(H / stride).
    """
    kh, kw, channels = kernel.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    if impl == "grouped":
        return jax.lax.conv_general_dilated(
            x,
            kernel.reshape(kh, kw, 1, channels),
            window_strides=(stride, stride),
            padding=((ph, ph), (pw, pw)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=channels,
        )
    return _shifted_sum_depthwise(x, kernel, stride)


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
def _shifted_sum_depthwise(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """``depthwise_conv``'s 'shifted_sum' form; its gradient is ``_shifted_sum_bwd``."""
    kh, kw, _ = kernel.shape
    _, h, w, _ = x.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    out_h = (h + 2 * ph - kh) // stride + 1
    out_w = (w + 2 * pw - kw) // stride + 1
    padded = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    return _weighted_sum(_windows(padded, kh, kw, out_h, out_w, stride), kernel)


def _shifted_sum_fwd(x, kernel, stride):
    return _shifted_sum_depthwise(x, kernel, stride), (x, kernel)


def _shifted_sum_bwd(stride, residuals, g):
    """Both gradients read one padded copy of the output gradient ``g``, dilated by ``stride``
    (``g_padded``; window (a, b) of it meets tap (kh-1-a, kw-1-b) of every input pixel):
    ``g_x`` is the stride-1 shifted sum of ``g_padded`` with the flipped kernel, and the kernel
    gradient of tap (a, b) is sum(x * window) over N, H, W: one variadic reduction over W per
    kernel row (its kw taps together), then a small sum over N and H. Autodiff of the forward
    instead copies kh * kw shifted windows of x and reduces each separately. Forward + backward
    of a 3x3 layer on 2 CPU cores: (16, 14, 14, 512) 9.9 ms by autodiff, 5.8 ms here (12.4 ms
    with all nine taps in ONE variadic reduction: ten input streams 2 KiB apart per pixel thrash
    the cache); (16, 14, 14, 960) 18.0 -> 10.9 ms. The single padded copy also makes XLA
    materialise ``g`` once: computed from ``g`` directly, both fusions recompute its producer
    (the BatchNorm backward) for every tap, which made the training step 8% slower. Products
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


_shifted_sum_depthwise.defvjp(_shifted_sum_fwd, _shifted_sum_bwd)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _no_padding(padding: Sequence[tuple[int, int]]) -> bool:
    return all(tuple(p) == (0, 0) for p in padding)


def _pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 1x1, stride-1 NHWC conv as one (N*H*W, in) x (in, out) matmul; its gradients are
    matmuls too."""
    n, h, w, cin = x.shape
    cout = kernel.shape[-1]
    return jnp.dot(x.reshape(-1, cin), kernel.reshape(cin, cout)).reshape(n, h, w, cout)


def conv_nhwc(
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
    """Dense 2-D conv, NHWC input, HWIO kernel, explicit padding; the ``conv_general_dilated``
    of every ``conv2d`` layer.

    On the CPU backend a 1x1 stride-1 conv is one matmul (``_pointwise_conv``; with XLA:CPU's
    default options the 1x1 convolution runs 2-5x slower than the same matmul, and the network has
    45 of them; with ``hpe_jax.compiler_options`` the two are equally fast). Every other case is
    ``jax.lax.conv_general_dilated`` unchanged: jit the network with
    ``compiler_options=hpe_jax.compiler_options.compiler_options()``, which keeps XLA:CPU's
    convolutions (and their gradients) off YNNPACK.
    """
    pointwise = (
        jax.default_backend() == "cpu"
        and rhs.shape[:2] == (1, 1)
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
def _batch_norm_train(
    x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode batch norm over all axes but the last: ``(y, batch mean, biased batch
    variance)``, float32. Its gradient is written out (``_batch_norm_bwd``) because XLA:CPU runs
    the autodiff of the two-pass statistics about 2x slower (many separate reductions)."""
    return _batch_norm_fwd(x, scale, bias, epsilon)[0]


def _batch_norm_fwd(x, scale, bias, epsilon):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean), axis=axes)
    inv = jax.lax.rsqrt(var + epsilon)
    mul = inv * scale
    y = x * mul + (bias - mean * mul)
    return (y, mean, var), (x, mean, inv, scale)


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


_batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class BatchNorm(nnx.Module):
    """BatchNorm over (N, H, W) (or N) with PyTorch's semantics.

    Normalises with the biased batch variance in training and updates ``var`` with the UNBIASED one,
    as ``torch.nn.BatchNorm2d`` does; ``momentum`` is Flax's
    (running = m * running + (1 - m) * batch).
    Statistics are computed in float32 whatever the input dtype; the output has the input's dtype.
    Under ``jax.jit`` with a batch-sharded input, the means run over the global batch.
    """

    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5):
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        if self.use_running_average:
            mul = jax.lax.rsqrt(self.var[...] + self.epsilon) * self.scale[...]
            y = xf * mul + (self.bias[...] - self.mean[...] * mul)
            return y.astype(x.dtype)
        y, mean, var = _batch_norm_train(xf, self.scale[...], self.bias[...], self.epsilon)
        count = math.prod(x.shape[:-1])
        unbiased = var * (count / max(count - 1, 1))
        m = self.momentum
        self.mean[...] = m * self.mean[...] + (1.0 - m) * mean
        self.var[...] = m * self.var[...] + (1.0 - m) * unbiased
        return y.astype(x.dtype)


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    use_bias: bool = False,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A conv with PyTorch's symmetric padding ``dilation * (kernel - 1) // 2`` and the
    original init.

    Kernel layout HWIO; parameters float32, computation in ``dtype``.
    """
    pad = dilation * (kernel - 1) // 2
    return nnx.Conv(
        in_channels,
        out_channels,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=(dilation, dilation),
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=torch_conv_init(kernel, kernel, out_channels),
        bias_init=jax.nn.initializers.zeros,
        conv_general_dilated=conv_nhwc,
        rngs=rngs,
    )


class ConvBN(nnx.Module):
    """conv -> BatchNorm -> optional SiLU: the original's ``Conv2d, BatchNorm2d[, SiLU]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        use_bias: bool = False,
        act: bool = True,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.conv = conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            dilation=dilation,
            use_bias=use_bias,
            dtype=dtype,
            rngs=rngs,
        )
        self.bn = BatchNorm(out_channels, momentum=bn_momentum, epsilon=bn_epsilon)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.bn(self.conv(x))
        return nnx.silu(y) if self.act else y


class DepthwiseConvBN(nnx.Module):
    """Depthwise conv (no bias) -> BatchNorm -> SiLU; the conv form is chosen by ``impl``."""

    def __init__(
        self,
        channels: int,
        kernel: int,
        *,
        stride: int,
        impl: str,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        init = torch_conv_init(kernel, kernel, channels)
        self.kernel = nnx.Param(init(rngs.params(), (kernel, kernel, channels), jnp.float32))
        self.bn = BatchNorm(channels, momentum=bn_momentum, epsilon=bn_epsilon)
        self.stride = stride
        self.impl = impl
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = depthwise_conv(
            x.astype(self.dtype), self.kernel[...].astype(self.dtype), self.stride, self.impl
        )
        return nnx.silu(self.bn(y))


class ConvTranspose2x2BN(nnx.Module):
    """ConvTranspose 2x2 stride 2 (with bias) -> BatchNorm -> SiLU, doubling H and W.

    Stride equals kernel, so output windows never overlap: ``y[n, 2i + a, 2j + b, o] =
    sum_c x[n, i, j, c] * kernel[a, b, c, o] + bias[o]``, computed as one matmul. ``kernel`` is
    (2, 2, in, out); PyTorch stores (in, out, 2, 2). PyTorch's default init (the original's init
    loop touches only Conv2d, BatchNorm2d and Linear).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        init = torch_default_uniform_init(out_channels * 4)
        self.kernel = nnx.Param(init(rngs.params(), (2, 2, in_channels, out_channels)))
        self.bias = nnx.Param(init(rngs.params(), (out_channels,)))
        self.bn = BatchNorm(out_channels, momentum=bn_momentum, epsilon=bn_epsilon)
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, _ = x.shape
        kernel = self.kernel[...].astype(self.dtype)
        y = jnp.einsum("nhwc,abco->nhawbo", x.astype(self.dtype), kernel)
        y = y.reshape(n, 2 * h, 2 * w, kernel.shape[-1]) + self.bias[...].astype(self.dtype)
        return nnx.silu(self.bn(y))


def linear(
    in_features: int,
    out_features: int,
    *,
    use_bias: bool = True,
    stddev: float = 0.01,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Linear:
    """A dense layer (kernel (in, out)) with normal(0, stddev) weights and zero bias."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=normal_init(stddev),
        bias_init=jax.nn.initializers.zeros,
        rngs=rngs,
    )
