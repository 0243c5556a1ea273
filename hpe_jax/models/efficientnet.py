"""EfficientNetV2 backbone: stem + stages 1-5, returning the four stage taps. NHWC."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from hpe_jax.models.config import BackboneSpec, StageSpec
from hpe_jax.models.layers import Layers


class StochasticDepth(nnx.Dropout):
    """Per-sample ("row") stochastic depth on a residual branch: drop with prob ``rate``, scale
    survivors by 1 / (1 - rate). Active only in training (``deterministic`` False)."""

    def __init__(self, rate: float, *, rngs: nnx.Rngs):
        super().__init__(rate, broadcast_dims=(1, 2, 3), rngs=rngs)


class SqueezeExcite(nnx.Module):
    """Global average pool -> dense (with bias) to ``squeezed`` -> SiLU -> dense back ->
    sigmoid gate.

    The original's 1x1 convs ``se.fc1`` / ``se.fc2`` act on the pooled vector, so they are dense
    layers here (init as those convs: normal(0, sqrt(2 / out))).
    """

    def __init__(self, channels: int, squeezed: int, *, layers: Layers, rngs: nnx.Rngs):
        self.fc1 = layers.linear(channels, squeezed, stddev=math.sqrt(2.0 / squeezed), rngs=rngs)
        self.fc2 = layers.linear(squeezed, channels, stddev=math.sqrt(2.0 / channels), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(x.dtype)
        gate = nnx.sigmoid(self.fc2(nnx.silu(self.fc1(pooled))))
        return x * gate[:, None, None, :]


class FusedMBConv(nnx.Module):
    """Fused-MBConv: conv3x3 (expand) -BN-SiLU [, conv1x1 project -BN]; residual
    when shape-preserving.

    With expand ratio 1 the block is the single ``fused`` conv3x3-BN-SiLU.
    """

    def __init__(
        self,
        spec: StageSpec,
        in_ch: int,
        stride: int,
        drop_rate: float,
        *,
        layers: Layers,
        rngs: nnx.Rngs,
    ):
        out_ch = spec.out_channels
        self.residual = stride == 1 and in_ch == out_ch
        if spec.expand == 1:
            self.fused = layers.conv_bn(in_ch, out_ch, spec.kernel, stride=stride, rngs=rngs)
            self.fused_point_wise = None
        else:
            mid = _make_divisible(in_ch * spec.expand)
            self.fused = layers.conv_bn(in_ch, mid, spec.kernel, stride=stride, rngs=rngs)
            self.fused_point_wise = layers.conv_bn(mid, out_ch, 1, act=False, rngs=rngs)
        self.drop_path = StochasticDepth(drop_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.fused(x)
        if self.fused_point_wise is not None:
            y = self.fused_point_wise(y)
        return x + self.drop_path(y) if self.residual else y


class MBConv(nnx.Module):
    """MBConv: 1x1 expand -BN-SiLU, depthwise -BN-SiLU, SE (input width / 4), 1x1 project -BN."""

    def __init__(
        self,
        spec: StageSpec,
        in_ch: int,
        stride: int,
        drop_rate: float,
        *,
        layers: Layers,
        rngs: nnx.Rngs,
    ):
        out_ch = spec.out_channels
        mid = _make_divisible(in_ch * spec.expand)
        self.residual = stride == 1 and in_ch == out_ch
        self.linear_bottleneck = layers.conv_bn(in_ch, mid, 1, rngs=rngs)
        self.depth_wise = layers.depthwise_bn(mid, spec.kernel, stride=stride, rngs=rngs)
        self.se = SqueezeExcite(mid, in_ch // 4, layers=layers, rngs=rngs) if spec.se else None
        self.point_wise = layers.conv_bn(mid, out_ch, 1, act=False, rngs=rngs)
        self.drop_path = StochasticDepth(drop_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.depth_wise(self.linear_bottleneck(x))
        if self.se is not None:
            y = self.se(y)
        y = self.point_wise(y)
        return x + self.drop_path(y) if self.residual else y


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width to a multiple of ``divisor`` (never below 90% of ``value``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class EfficientNetV2Backbone(nnx.Module):
    """Stem (conv3x3 s2 -BN-SiLU) and stages 1-5 of EfficientNetV2.

    ``__call__`` maps (N, H, W, 3) to the four taps: outputs of the last block of stages 2-5, at
    strides 4, 8, 16 and 16. Block i (counting kept blocks from 0) has stochastic-depth rate
    ``drop_connect_rate * i / spec.total_blocks``.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        *,
        drop_connect_rate: float,
        layers: Layers,
        rngs: nnx.Rngs,
    ):
        self.stem = layers.conv_bn(3, spec.stem_channels, 3, stride=2, rngs=rngs)
        blocks = []
        taps = []
        for stage_idx, stage in enumerate(spec.stages):
            block_type = FusedMBConv if stage.fused else MBConv
            for r in range(stage.repeats):
                in_ch = stage.in_channels if r == 0 else stage.out_channels
                stride = stage.stride if r == 0 else 1
                rate = drop_connect_rate * len(blocks) / spec.total_blocks
                blocks.append(block_type(stage, in_ch, stride, rate, layers=layers, rngs=rngs))
            if stage_idx >= 1:
                taps.append(len(blocks) - 1)
        self.blocks = nnx.List(blocks)
        self.tap_indices = tuple(taps)

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        x = self.stem(x)
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.tap_indices:
                taps.append(x)
        return taps
