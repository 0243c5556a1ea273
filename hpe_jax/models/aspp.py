"""Modified ASPP with ECA-style channel attention (checkpoint prefix ``aspp``). NHWC."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from hpe_jax.models.initializers import torch_default_uniform_init
from hpe_jax.models.layers import Layers


class ChannelAttention(nnx.Module):
    """ECA-like gate on a branch output y (N, H, W, C).

    Global average pool -> (N, C); ``adjust_module`` (the original's bias-free 1x1 conv, a dense
    layer on the pooled vector); ``bypass_module``, a 1-D conv over the CHANNEL axis (one in/out
    channel, kernel 3, zero padding 1, no bias; ``kernel`` holds its 3 taps); sigmoid; y * gate.
    """

    def __init__(self, channels: int, *, layers: Layers, rngs: nnx.Rngs):
        self.adjust_module = layers.linear(
            channels, channels, use_bias=False, stddev=math.sqrt(2.0 / channels), rngs=rngs
        )
        self.bypass_module = nnx.Param(torch_default_uniform_init(3)(rngs.params(), (3,)))

    def __call__(self, y: jax.Array) -> jax.Array:
        pooled = jnp.mean(y, axis=(1, 2), dtype=jnp.float32).astype(y.dtype)
        z = self.adjust_module(pooled).astype(jnp.float32)
        taps = self.bypass_module[...]
        padded = jnp.pad(z, ((0, 0), (1, 1)))
        z = taps[0] * padded[:, :-2] + taps[1] * padded[:, 1:-1] + taps[2] * padded[:, 2:]
        return y * nnx.sigmoid(z).astype(y.dtype)[:, None, None, :]


class AtrousAttentionBranch(nnx.Module):
    """``artous_convolution`` (conv no bias -BN-SiLU; 1x1 at rate 1, 3x3 dilated otherwise) and
    channel attention (the checkpoint's spelling is kept)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rate: int,
        *,
        layers: Layers,
        rngs: nnx.Rngs,
    ):
        kernel = 1 if rate == 1 else 3
        self.artous_convolution = layers.conv_bn(
            in_channels, out_channels, kernel, dilation=rate, rngs=rngs
        )
        self.attention = ChannelAttention(out_channels, layers=layers, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.attention(self.artous_convolution(x))


class PoolingBranch(nnx.Module):
    """Global average pool -> 1x1 conv -BN-SiLU -> broadcast back to H x W (the bilinear resize of
    a 1x1 map)."""

    def __init__(self, in_channels: int, out_channels: int, *, layers: Layers, rngs: nnx.Rngs):
        self.conv = layers.conv_bn(in_channels, out_channels, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, _ = x.shape
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True, dtype=jnp.float32).astype(x.dtype)
        y = self.conv(pooled)
        return jnp.broadcast_to(y, (n, h, w, y.shape[-1]))


class ASPP(nnx.Module):
    """Four branches (1x1; atrous rate 1 + attention; atrous rate 2 + attention; pooling),
    concatenated in that order, then ``project`` (1x1 conv -BN-SiLU) and dropout."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        dropout: float,
        layers: Layers,
        rngs: nnx.Rngs,
    ):
        kw = {"layers": layers, "rngs": rngs}
        self.convs = nnx.List(
            [
                layers.conv_bn(in_channels, out_channels, 1, rngs=rngs),
                AtrousAttentionBranch(in_channels, out_channels, 1, **kw),
                AtrousAttentionBranch(in_channels, out_channels, 2, **kw),
                PoolingBranch(in_channels, out_channels, **kw),
            ]
        )
        self.project = layers.conv_bn(4 * out_channels, out_channels, 1, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.concatenate([branch(x) for branch in self.convs], axis=-1)
        return self.dropout(self.project(y))


class ASPPHead(nnx.Module):
    """The original's ``aspp`` sequence: ASPP, conv3x3 (no bias), BN, SiLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        dropout: float,
        layers: Layers,
        rngs: nnx.Rngs,
    ):
        self.aspp = ASPP(in_channels, out_channels, dropout=dropout, layers=layers, rngs=rngs)
        self.conv = layers.conv(out_channels, out_channels, 3, rngs=rngs)
        self.bn = layers.norm(out_channels)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.silu(self.bn(self.conv(self.aspp(x))))
