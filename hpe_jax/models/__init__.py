"""Flax NNX port of the original network (EfficientNetV2 + FPAS + ASPP/ECA + bin heads)."""

from hpe_jax.models.config import BACKBONES, get_config
from hpe_jax.models.hpe_net import HEAD_NAMES, HPENet, count_parameters, init_model

__all__ = ["BACKBONES", "HEAD_NAMES", "HPENet", "count_parameters", "get_config", "init_model"]
