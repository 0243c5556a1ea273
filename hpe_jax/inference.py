"""A network for inference from a checkpoint, with the input size it was trained at.

``load_for_inference(path)`` accepts what ``hpe_jax.evaluate.load_network`` accepts (an orbax
checkpoint of this project, or an original PyTorch checkpoint file) and returns the network in
inference mode with the side S of its square input: for an orbax checkpoint the side of the
crops its training run fed the network (``config.data.image_size``, stored in the checkpoint's
meta by ``hpe_jax.train``; ``configs/synthetic.py``: 64), else its ``model_config.input_size``
(checkpoints from ``convert_torch`` and ``pretrained``); the original's 224 for a PyTorch file.
``Predictor(input_size=...)`` and ``--input_size`` override it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpe_jax.errors import UserError
from hpe_jax.evaluate import TORCH_SUFFIXES, is_torch_checkpoint, load_network

if TYPE_CHECKING:
    from hpe_jax.models import HPENet

TORCH_INPUT_SIZE = 224


def checkpoint_input_size(path: str | Path) -> int:
    """The input side S (pixels) of the network at ``path``: an orbax checkpoint's stored
    training crop side (``IMAGE_SIZE_KEY`` of its meta), else its ``model_config.input_size``
    (the config default when absent); 224 for a PyTorch file."""
    if is_torch_checkpoint(path):
        return TORCH_INPUT_SIZE
    from hpe_jax.checkpoint import IMAGE_SIZE_KEY, read_meta
    from hpe_jax.models.config import get_config

    meta = read_meta(path)
    if IMAGE_SIZE_KEY in meta:
        return int(meta[IMAGE_SIZE_KEY])
    default = get_config(meta.get("variant") or "s").input_size
    return int(meta.get("model_config", {}).get("input_size", default))


def load_for_inference(
    path: str | Path, variant: str | None = None, kernels: str = "auto"
) -> tuple[HPENet, int]:
    """The network at ``path`` in inference mode and its input side S (pixels).

    Args:
      path: an orbax checkpoint (step directory or directory of steps) or a PyTorch checkpoint
        file of the original (``hpe_jax.evaluate.load_network``).
      variant: 's', 'm' or 'l'; None: the stored one (PyTorch files: 's').
      kernels: the kernel set ('auto', 'xla' or 'cpu'; ``hpe_jax.models.kernels``); the weights
        are the same for every set.

    Returns:
      (network, S): the network maps (N, S, S, 3) float32 ImageNet-normalised RGB to the six
      logit arrays.
    """
    if Path(path).is_file() and not is_torch_checkpoint(path):
        raise UserError(
            f"checkpoint {path}: a file not named like a PyTorch checkpoint (expected "
            f"{', '.join(TORCH_SUFFIXES)}) or an orbax checkpoint directory"
        )
    if not is_torch_checkpoint(path):
        from hpe_jax.checkpoint import load_model

        return load_model(path, variant=variant, kernels=kernels), checkpoint_input_size(path)
    model = load_network(path, variant)
    if kernels != "auto":
        from flax import nnx

        from hpe_jax.models import HPENet
        from hpe_jax.models.config import get_config

        config = get_config(model.variant)
        config.kernels = kernels
        rebuilt = HPENet(config, rngs=nnx.Rngs(0))
        nnx.update(rebuilt, nnx.state(model))
        rebuilt.eval()
        model = rebuilt
    return model, TORCH_INPUT_SIZE
