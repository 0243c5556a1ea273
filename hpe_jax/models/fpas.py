"""Feature Pyramid Aggregation Structure (checkpoint prefix ``side``): top-down then bottom-up
fusion of the four backbone taps. NHWC."""

from __future__ import annotations

import jax
from flax import nnx

from hpe_jax.models.layers import Layers


def _pair(
    c_in: int,
    c_mid: int,
    c_out: int,
    k1: int,
    k2: int,
    s1: int,
    s2: int,
    *,
    layers: Layers,
    rngs: nnx.Rngs,
) -> nnx.List:
    """Two conv(with bias)-BN-SiLU layers: the original's ``Sequential`` indices 0-2 and 3-5."""
    return nnx.List(
        [
            layers.conv_bn(c_in, c_mid, k1, stride=s1, use_bias=True, rngs=rngs),
            layers.conv_bn(c_mid, c_out, k2, stride=s2, use_bias=True, rngs=rngs),
        ]
    )


def _run(pair: nnx.List, x: jax.Array) -> jax.Array:
    for layer in pair:
        x = layer(x)
    return x


class FPAS(nnx.Module):
    """Top-down (up1, up2, upsample2, up3, upsample3) then bottom-up (down0..down3) fusion.

    ``__call__(taps)`` takes the taps T1..T4 (widths c1..c4 at strides 4, 8, 16, 16) and returns the
    fused map at stride 64 with c4 channels (4x4 at 224 input).
    """

    def __init__(self, channels: tuple[int, int, int, int], *, layers: Layers, rngs: nnx.Rngs):
        c1, c2, c3, c4 = channels
        kw = {"layers": layers, "rngs": rngs}
        self.up1 = _pair(c4, c4, c3, 3, 1, 1, 1, **kw)
        self.up2 = _pair(c3, c3, c2, 3, 1, 1, 1, **kw)
        self.upsample2 = layers.conv_transpose_bn(c2, c2, rngs=rngs)
        self.up3 = _pair(c2, c2, c1, 3, 1, 1, 1, **kw)
        self.upsample3 = layers.conv_transpose_bn(c1, c1, rngs=rngs)
        self.down0 = _pair(c1, c1, c1, 3, 3, 1, 2, **kw)
        self.down1 = _pair(c1, c2, c2, 3, 3, 1, 2, **kw)
        self.down2 = _pair(c2, c3, c3, 3, 3, 1, 1, **kw)
        self.down3 = _pair(c3, c4, c4, 3, 3, 2, 2, **kw)

    def __call__(self, taps: list[jax.Array]) -> jax.Array:
        t1, t2, t3, t4 = taps
        o1 = _run(self.up1, t4)
        o2 = _run(self.up2, o1 + t3)
        o3 = _run(self.up3, self.upsample2(o2) + t2)
        d = _run(self.down0, self.upsample3(o3) + t1)
        d = _run(self.down1, d + o3)
        d = _run(self.down2, d + o2)
        return _run(self.down3, d + o1)
