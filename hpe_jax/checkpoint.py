"""Model checkpoints on disk (orbax): one layout for converted and trained models.

A checkpoint step directory holds composite items: ``model`` (the network's parameters and BN
statistics as a nested dict of arrays, the NNX state's pure-dict form) and ``meta`` (JSON: at least
``variant`` and ``model_config``). Training adds its own items (optimiser state, data iterator)
beside them; ``load_model`` reads only ``model`` and ``meta``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from hpe_jax.models import HPENet, get_config
from hpe_jax.models.config import upgrade_model_config

MODEL_ITEM = "model"
META_ITEM = "meta"
_STEP_DIR = re.compile(r"^\d+$")
# The variables a model checkpoint holds (a tuple filter: either kind).
MODEL_VARIABLES = (nnx.Param, nnx.BatchStat)


def model_state(model: nnx.Module) -> dict[str, Any]:
    """The parameters and BN statistics of ``model`` as a nested dict of arrays."""
    return nnx.to_pure_dict(nnx.state(model, MODEL_VARIABLES))


def save_model(
    directory: str | Path,
    model: HPENet,
    config: ml_collections.ConfigDict,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Writes ``model`` (with its model config) as a checkpoint step directory at ``directory``."""
    directory = Path(directory).absolute()
    meta = {"variant": config.variant, "model_config": config.to_dict(), **(extra_meta or {})}
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        ckptr.save(
            directory,
            args=ocp.args.Composite(
                **{
                    MODEL_ITEM: ocp.args.StandardSave(model_state(model)),
                    META_ITEM: ocp.args.JsonSave(meta),
                }
            ),
            force=True,
        )
    return directory


def resolve_step_dir(path: str | Path) -> Path:
    """A checkpoint step directory from ``path``: the path itself when it holds a ``model`` item,
    else the newest numbered step directory inside it (an orbax CheckpointManager directory)."""
    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    if (path / MODEL_ITEM).is_dir():
        return path
    steps = sorted((int(p.name) for p in path.iterdir() if _STEP_DIR.match(p.name)), reverse=True)
    for step in steps:
        if (path / str(step) / MODEL_ITEM).is_dir():
            return path / str(step)
    raise FileNotFoundError(
        f"{path} is neither a checkpoint step directory (no '{MODEL_ITEM}' item) nor a "
        "directory of numbered checkpoint steps"
    )


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` item of the checkpoint at ``path`` (see ``resolve_step_dir``)."""
    step_dir = resolve_step_dir(path)
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        restored = ckptr.restore(
            step_dir, args=ocp.args.Composite(**{META_ITEM: ocp.args.JsonRestore()})
        )
    return dict(restored[META_ITEM])


def restore_model_state(path: str | Path, model: HPENet) -> None:
    """Loads the ``model`` item of the checkpoint at ``path`` into ``model`` in place.

    Raises a ValueError naming every missing, unexpected or mis-shaped entry.
    """
    step_dir = resolve_step_dir(path)
    target = model_state(model)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        try:
            restored = ckptr.restore(
                step_dir,
                args=ocp.args.Composite(**{MODEL_ITEM: ocp.args.StandardRestore(abstract)}),
            )
        except (ValueError, KeyError) as err:
            raise ValueError(f"checkpoint {step_dir} does not fit this network: {err}") from err
    state = nnx.state(model, MODEL_VARIABLES)
    nnx.replace_by_pure_dict(state, restored[MODEL_ITEM])
    nnx.update(model, state)


def load_model(path: str | Path, variant: str | None = None, kernels: str = "auto") -> HPENet:
    """The network stored at ``path`` (a checkpoint step directory, or a directory of numbered
    steps: the newest is used), in inference mode.

    The variant and model config come from the checkpoint's ``meta``; a ``variant`` argument that
    disagrees with it is an error. ``kernels`` ('auto', 'xla' or 'cpu'; 'auto': from
    ``jax.default_backend()``) picks the kernel set, whatever the stored config says. The
    returned model maps (N, H, W, 3) float32 ImageNet-normalised RGB to the six logit arrays
    (yaw_coarse, yaw_shift, pitch_coarse, pitch_shift, roll_coarse, roll_shift).
    """
    meta = read_meta(path)
    stored = meta.get("variant")
    if variant is not None and stored is not None and variant != stored:
        raise ValueError(
            f"checkpoint {path} holds variant {stored!r}, not the requested {variant!r}"
        )
    config = get_config(stored or variant or "s")
    config.update(upgrade_model_config(meta.get("model_config", {})))
    config.kernels = kernels
    model = HPENet(config, rngs=nnx.Rngs(0))
    restore_model_state(path, model)
    model.eval()
    return model
