"""The full head-pose network: EfficientNetV2 backbone, FPAS, ASPP head and the six bin heads."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from hpe_jax.models.aspp import ASPPHead
from hpe_jax.models.config import ASPP_CHANNELS, BACKBONES, get_config
from hpe_jax.models.efficientnet import EfficientNetV2Backbone
from hpe_jax.models.fpas import FPAS
from hpe_jax.models.kernels import KERNELS, resolve_kernels
from hpe_jax.models.layers import Layers
from hpe_jax.pose import NUM_COARSE_BINS, NUM_SHIFT_BINS

HEAD_NAMES = (
    "fc_yaw_coarse",
    "fc_yaw_shift",
    "fc_pitch_coarse",
    "fc_pitch_shift",
    "fc_roll_coarse",
    "fc_roll_shift",
)


class HPENet(nnx.Module):
    """Head pose network of the original, NHWC.

    ``__call__(images)`` takes (N, H, W, 3) ImageNet-normalised RGB images and returns the six
    float32 logit arrays in the original's order: yaw_coarse (N, 10), yaw_shift (N, 20),
    pitch_coarse, pitch_shift, roll_coarse, roll_shift. Use ``model.train()`` / ``model.eval()``
    to switch batch statistics, dropout and stochastic depth; dropout draws from the ``dropout``
    rng stream.

    The kernel set (``hpe_jax.models.kernels``) is chosen once, here, from ``config.kernels`` and
    ``platform`` (the platform of the devices the network will be compiled for, e.g.
    ``mesh.devices.flat[0].platform``; ``None``: ``jax.default_backend()``); ``model.kernels``
    names it ('xla' or 'cpu'). It changes the compiled program, not the parameters.
    """

    def __init__(
        self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs, platform: str | None = None
    ):
        spec = BACKBONES[config.variant]
        self.variant = config.variant
        self.kernels = resolve_kernels(config.kernels, platform)
        self.dtype = jnp.dtype(config.dtype)
        layers = Layers(
            KERNELS[self.kernels],
            dtype=self.dtype,
            bn_momentum=config.bn_momentum,
            bn_epsilon=config.bn_epsilon,
        )
        self.backbone = EfficientNetV2Backbone(
            spec, drop_connect_rate=config.drop_connect_rate, layers=layers, rngs=rngs
        )
        self.side = FPAS(spec.tap_channels, layers=layers, rngs=rngs)
        self.aspp = ASPPHead(
            spec.tap_channels[-1], ASPP_CHANNELS, dropout=config.dropout, layers=layers, rngs=rngs
        )
        for name in HEAD_NAMES:
            width = NUM_COARSE_BINS if name.endswith("coarse") else NUM_SHIFT_BINS
            setattr(self, name, layers.linear(ASPP_CHANNELS, width, rngs=rngs))

    def __call__(self, images: jax.Array) -> tuple[jax.Array, ...]:
        x = images.astype(self.dtype)
        features = self.aspp(self.side(self.backbone(x)))
        pooled = jnp.mean(features, axis=(1, 2), dtype=jnp.float32).astype(features.dtype)
        return tuple(getattr(self, name)(pooled).astype(jnp.float32) for name in HEAD_NAMES)


def count_parameters(model: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param`` leaves), BN statistics excluded."""
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def init_model(
    variant: str = "s", seed: int = 0, kernels: str = "auto", **config_overrides: Any
) -> HPENet:
    """A freshly initialised network of ``variant`` ('s', 'm' or 'l') with the original's init,
    in training mode, with the kernel set ``kernels`` ('auto', 'xla' or 'cpu'; 'auto': from
    ``jax.default_backend()``). ``config_overrides`` replace other fields of
    ``hpe_jax.models.get_config``."""
    config = get_config(variant)
    config.update(config_overrides)
    config.kernels = kernels
    return HPENet(config, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
