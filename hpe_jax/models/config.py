"""Model configuration: backbone variant tables and the ml_collections config of the network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ml_collections

from hpe_jax.errors import UserError


@dataclass(frozen=True)
class StageSpec:
    """One EfficientNetV2 stage: expand ratio, kernel, stride, in/out widths, repeats, SE, fused."""

    expand: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int
    se: bool
    fused: bool


@dataclass(frozen=True)
class BackboneSpec:
    """The kept part (stem + stages 1-5) of one EfficientNetV2 variant."""

    stem_channels: int
    stages: tuple[StageSpec, ...]
    total_blocks: int  # blocks of the FULL network (all stages), for the stochastic-depth schedule

    @property
    def kept_blocks(self) -> int:
        return sum(s.repeats for s in self.stages)

    @property
    def tap_channels(self) -> tuple[int, int, int, int]:
        """Widths of the four taps (last block of stages 2, 3, 4 and 5)."""
        return tuple(s.out_channels for s in self.stages[1:])  # type: ignore[return-value]


def _stages(rows: tuple[tuple[int, ...], ...]) -> tuple[StageSpec, ...]:
    return tuple(
        StageSpec(e, k, s, i, o, n, se=idx >= 3, fused=idx < 3)
        for idx, (e, k, s, i, o, n) in enumerate(rows)
    )


BACKBONES: dict[str, BackboneSpec] = {
    "s": BackboneSpec(
        stem_channels=24,
        stages=_stages(
            (
                (1, 3, 1, 24, 24, 2),
                (4, 3, 2, 24, 48, 4),
                (4, 3, 2, 48, 64, 4),
                (4, 3, 2, 64, 128, 6),
                (6, 3, 1, 128, 160, 9),
            )
        ),
        total_blocks=40,
    ),
    "m": BackboneSpec(
        stem_channels=24,
        stages=_stages(
            (
                (1, 3, 1, 24, 24, 3),
                (4, 3, 2, 24, 48, 5),
                (4, 3, 2, 48, 80, 5),
                (4, 3, 2, 80, 160, 7),
                (6, 3, 1, 160, 176, 14),
            )
        ),
        total_blocks=57,
    ),
    "l": BackboneSpec(
        stem_channels=32,
        stages=_stages(
            (
                (1, 3, 1, 32, 32, 4),
                (4, 3, 2, 32, 64, 7),
                (4, 3, 2, 64, 96, 7),
                (4, 3, 2, 96, 192, 10),
                (6, 3, 1, 192, 224, 19),
            )
        ),
        total_blocks=79,
    ),
}

ASPP_CHANNELS = 256

# ``depthwise_impl`` values of stored model configs and the kernel set each stands for.
_DEPTHWISE_IMPL_KERNELS = {"auto": "auto", "shifted_sum": "cpu", "grouped": "xla"}


def get_config(variant: str = "s") -> ml_collections.ConfigDict:
    """The network's configuration (the original's values by default).

    Fields: ``variant`` ('s', 'm' or 'l'), ``input_size`` (pixels, square), ``dtype`` (compute
    dtype, 'float32' or 'bfloat16'; parameters stay float32), ``dropout`` (ASPP projection dropout
    rate),
    ``drop_connect_rate`` (stochastic-depth rate of the full network), ``bn_momentum`` (Flax
    convention: running = momentum * running + (1 - momentum) * batch), ``bn_epsilon``, and
    ``kernels`` (the implementations of the convs and of BatchNorm, ``hpe_jax.models.kernels``:
    'xla' for GPUs and TPUs, 'cpu' for the CPU, or 'auto', picked from the platform the network
    is compiled for).
    """
    if variant not in BACKBONES:
        raise UserError(f"unknown variant {variant!r}; expected one of {sorted(BACKBONES)}")
    cfg = ml_collections.ConfigDict()
    cfg.variant = variant
    cfg.input_size = 224
    cfg.dtype = "float32"
    cfg.dropout = 0.5
    cfg.drop_connect_rate = 0.2
    cfg.bn_momentum = 0.9
    cfg.bn_epsilon = 1e-5
    cfg.kernels = "auto"
    return cfg


def upgrade_model_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored model config (a checkpoint's ``meta['model_config']``) with today's fields: a
    ``depthwise_impl`` ('auto', 'shifted_sum' or 'grouped') becomes ``kernels`` ('auto', 'cpu'
    or 'xla'). Other fields are returned unchanged."""
    config = dict(stored)
    if "depthwise_impl" in config:
        impl = config.pop("depthwise_impl")
        if impl not in _DEPTHWISE_IMPL_KERNELS:
            raise UserError(
                f"depthwise_impl must be one of {', '.join(_DEPTHWISE_IMPL_KERNELS)}; got {impl!r}"
            )
        config.setdefault("kernels", _DEPTHWISE_IMPL_KERNELS[impl])
    return config
