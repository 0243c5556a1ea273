"""hpe-jax: landmark-free head pose estimation in JAX / Flax NNX.

Stable public API:
- ``init_model(variant, seed)``: a freshly initialised network (the original's init).
- ``load_model(path, variant=None)``: a network from an orbax checkpoint, in inference mode.
- ``decode_angles(outputs)``: the six logit arrays -> (N, 3) degrees (yaw, pitch, roll).
- ``Predictor(checkpoint).predict(image)``: the faces of an image with their poses (``Face``).
- ``draw_pose(image, face)``: an image with a face's box, head axes and angles drawn.

Imported lazily, so that data-loader worker processes importing ``hpe_jax.data`` do not load
flax and orbax.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "init_model": "hpe_jax.models.hpe_net",
    "load_model": "hpe_jax.checkpoint",
    "decode_angles": "hpe_jax.pose",
    "HPENet": "hpe_jax.models.hpe_net",
    "get_config": "hpe_jax.models.config",
    "Predictor": "hpe_jax.predictor",
    "Face": "hpe_jax.predictor",
    "draw_pose": "hpe_jax.draw",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hpe_jax' has no attribute {name!r}")
