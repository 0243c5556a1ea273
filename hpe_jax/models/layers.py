"""Building blocks with PyTorch semantics: symmetric padding, BatchNorm with unbiased running
variance, depthwise and 2x2 transposed convolutions, with the original's initialisers. NHWC.

``Layers`` builds them all with one kernel set (``hpe_jax.models.kernels``), compute dtype and
BatchNorm setting; the network's blocks take a ``Layers`` and ask it for their layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from hpe_jax.models.initializers import normal_init, torch_conv_init, torch_default_uniform_init
from hpe_jax.models.kernels import BatchNormTrain, DepthwiseConv, Kernels


class BatchNorm(nnx.Module):
    """BatchNorm over (N, H, W) (or N) with PyTorch's semantics.

    Normalises with the biased batch variance in training and updates ``var`` with the UNBIASED one,
    as ``torch.nn.BatchNorm2d`` does; ``momentum`` is Flax's
    (running = m * running + (1 - m) * batch). ``train_fn`` computes the training-mode output and
    batch statistics (a kernel set's ``batch_norm_train``).
    Statistics are computed in float32 whatever the input dtype; the output has the input's dtype.
    Under ``jax.jit`` with a batch-sharded input, the means run over the global batch.
    """

    def __init__(
        self,
        num_features: int,
        *,
        train_fn: BatchNormTrain,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
    ):
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.train_fn = train_fn
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        if self.use_running_average:
            mul = jax.lax.rsqrt(self.var[...] + self.epsilon) * self.scale[...]
            y = xf * mul + (self.bias[...] - self.mean[...] * mul)
            return y.astype(x.dtype)
        y, mean, var = self.train_fn(xf, self.scale[...], self.bias[...], self.epsilon)
        count = math.prod(x.shape[:-1])
        unbiased = var * (count / max(count - 1, 1))
        m = self.momentum
        self.mean[...] = m * self.mean[...] + (1.0 - m) * mean
        self.var[...] = m * self.var[...] + (1.0 - m) * unbiased
        return y.astype(x.dtype)


class ConvBN(nnx.Module):
    """conv -> BatchNorm -> optional SiLU: the original's ``Conv2d, BatchNorm2d[, SiLU]``."""

    def __init__(self, conv: nnx.Conv, bn: BatchNorm, *, act: bool):
        self.conv = conv
        self.bn = bn
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.bn(self.conv(x))
        return nnx.silu(y) if self.act else y


class DepthwiseConvBN(nnx.Module):
    """Depthwise conv (no bias, ``kernel`` (k, k, C)) -> BatchNorm -> SiLU; the conv is
    ``conv_fn``, a kernel set's ``depthwise_conv``."""

    def __init__(
        self,
        channels: int,
        kernel: int,
        *,
        stride: int,
        conv_fn: DepthwiseConv,
        bn: BatchNorm,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        init = torch_conv_init(kernel, kernel, channels)
        self.kernel = nnx.Param(init(rngs.params(), (kernel, kernel, channels), jnp.float32))
        self.bn = bn
        self.stride = stride
        self.conv_fn = conv_fn
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv_fn(x.astype(self.dtype), self.kernel[...].astype(self.dtype), self.stride)
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
        bn: BatchNorm,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        init = torch_default_uniform_init(out_channels * 4)
        self.kernel = nnx.Param(init(rngs.params(), (2, 2, in_channels, out_channels)))
        self.bias = nnx.Param(init(rngs.params(), (out_channels,)))
        self.bn = bn
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, _ = x.shape
        kernel = self.kernel[...].astype(self.dtype)
        y = jnp.einsum("nhwc,abco->nhawbo", x.astype(self.dtype), kernel)
        y = y.reshape(n, 2 * h, 2 * w, kernel.shape[-1]) + self.bias[...].astype(self.dtype)
        return nnx.silu(self.bn(y))


@dataclass(frozen=True)
class Layers:
    """Factories of the network's layers, all with the same kernel set, compute dtype and
    BatchNorm settings. Parameters are float32; computation runs in ``dtype``.

    Attributes:
      kernels: the implementations of the convs and of training-mode BatchNorm.
      dtype: compute dtype (float32 or bfloat16).
      bn_momentum: Flax convention: running = momentum * running + (1 - momentum) * batch.
      bn_epsilon: added to the variance.
    """

    kernels: Kernels
    dtype: jnp.dtype = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    def norm(self, num_features: int) -> BatchNorm:
        """A ``BatchNorm`` over ``num_features`` channels."""
        return BatchNorm(
            num_features,
            train_fn=self.kernels.batch_norm_train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
        )

    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        use_bias: bool = False,
        rngs: nnx.Rngs,
    ) -> nnx.Conv:
        """A square conv with PyTorch's symmetric padding ``dilation * (kernel - 1) // 2`` and
        the original init; kernel (k, k, in, out), HWIO."""
        pad = dilation * (kernel - 1) // 2
        return nnx.Conv(
            in_channels,
            out_channels,
            (kernel, kernel),
            strides=(stride, stride),
            padding=((pad, pad), (pad, pad)),
            kernel_dilation=(dilation, dilation),
            use_bias=use_bias,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=torch_conv_init(kernel, kernel, out_channels),
            bias_init=jax.nn.initializers.zeros,
            conv_general_dilated=self.kernels.conv_general_dilated,
            rngs=rngs,
        )

    def conv_bn(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        use_bias: bool = False,
        act: bool = True,
        rngs: nnx.Rngs,
    ) -> ConvBN:
        """``conv`` -> ``norm`` -> SiLU (no SiLU when ``act`` is False)."""
        conv = self.conv(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            dilation=dilation,
            use_bias=use_bias,
            rngs=rngs,
        )
        return ConvBN(conv, self.norm(out_channels), act=act)

    def depthwise_bn(
        self, channels: int, kernel: int, *, stride: int, rngs: nnx.Rngs
    ) -> DepthwiseConvBN:
        """Depthwise ``kernel`` x ``kernel`` conv -> ``norm`` -> SiLU."""
        return DepthwiseConvBN(
            channels,
            kernel,
            stride=stride,
            conv_fn=self.kernels.depthwise_conv,
            bn=self.norm(channels),
            dtype=self.dtype,
            rngs=rngs,
        )

    def conv_transpose_bn(
        self, in_channels: int, out_channels: int, *, rngs: nnx.Rngs
    ) -> ConvTranspose2x2BN:
        """2x2 stride-2 transposed conv (with bias) -> ``norm`` -> SiLU."""
        return ConvTranspose2x2BN(
            in_channels, out_channels, bn=self.norm(out_channels), dtype=self.dtype, rngs=rngs
        )

    def linear(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        stddev: float = 0.01,
        rngs: nnx.Rngs,
    ) -> nnx.Linear:
        """A dense layer (kernel (in, out)) with normal(0, stddev) weights and zero bias."""
        return nnx.Linear(
            in_features,
            out_features,
            use_bias=use_bias,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=normal_init(stddev),
            bias_init=jax.nn.initializers.zeros,
            rngs=rngs,
        )
