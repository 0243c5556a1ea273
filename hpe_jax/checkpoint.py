"""Checkpoints on disk (orbax): one layout for converted models and training states.

A checkpoint step directory holds composite items: ``model`` (the network's parameters and BN
statistics as a nested dict of arrays, the NNX state's pure-dict form) and ``meta`` (JSON: at least
``variant`` and ``model_config``). A resumable training checkpoint adds ``opt_state`` (the
optimiser state), ``train`` (JSON: ``step``, ``epoch``) and ``data_iter`` (the grain iterator);
``load_model`` reads only ``model`` and ``meta``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from hpe_jax.models import HPENet, get_config
from hpe_jax.models.config import upgrade_model_config

if TYPE_CHECKING:
    from hpe_jax.train_state import TrainState

MODEL_ITEM = "model"
META_ITEM = "meta"
OPT_ITEM = "opt_state"
TRAIN_ITEM = "train"
DATA_ITEM = "data_iter"
_STEP_DIR = re.compile(r"^\d+$")
# The variables a model checkpoint holds (a tuple filter: either kind).
MODEL_VARIABLES = (nnx.Param, nnx.BatchStat)


def model_state(model: nnx.Module) -> dict[str, Any]:
    """The parameters and BN statistics of ``model`` as a nested dict of arrays."""
    return nnx.to_pure_dict(nnx.state(model, MODEL_VARIABLES))


def _model_meta(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {"variant": config.variant, "model_config": config.to_dict()}


def save_model(
    directory: str | Path,
    model: HPENet,
    config: ml_collections.ConfigDict,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Writes ``model`` (with its model config) as a checkpoint step directory at ``directory``."""
    directory = Path(directory).absolute()
    meta = {**_model_meta(config), **(extra_meta or {})}
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


def make_manager(directory: str | Path, max_to_keep: int) -> ocp.CheckpointManager:
    """A checkpoint manager of numbered step directories under ``directory`` (created), keeping
    the newest ``max_to_keep``."""
    return ocp.CheckpointManager(
        Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )


def _state_model_item(state: TrainState) -> dict[str, Any]:
    return nnx.to_pure_dict(nnx.merge_state(state.params, state.batch_stats))


def save_train_state(
    manager: ocp.CheckpointManager,
    state: TrainState,
    model_config: ml_collections.ConfigDict,
    *,
    extra_meta: dict[str, Any] | None = None,
    epoch: int | None = None,
    iterator: grain.DatasetIterator | None = None,
) -> None:
    """Saves ``state`` as step ``state.step`` of ``manager`` (asynchronously: the arrays are
    copied before this returns).

    Always written: the ``model`` item (its parameters and BN statistics, what ``load_model``
    reads) and ``meta`` (variant, ``model_config`` and ``extra_meta``). With ``iterator`` (and
    ``epoch``, the count of finished epochs) the checkpoint is resumable: the optimiser state, the
    step and epoch, and the data iterator's position are added.
    """
    step = int(state.step)
    items = {
        MODEL_ITEM: ocp.args.StandardSave(_state_model_item(state)),
        META_ITEM: ocp.args.JsonSave({**_model_meta(model_config), **(extra_meta or {})}),
    }
    if iterator is not None:
        items[OPT_ITEM] = ocp.args.StandardSave(state.opt_state)
        items[TRAIN_ITEM] = ocp.args.JsonSave({"step": step, "epoch": epoch})
        items[DATA_ITEM] = grain.checkpoint.CheckpointSave(iterator)
    manager.save(step, args=ocp.args.Composite(**items))


def restore_train_state(
    manager: ocp.CheckpointManager, state: TrainState, iterator: grain.DatasetIterator
) -> tuple[TrainState, int]:
    """Resumes from the newest step of ``manager``: returns the restored training state and the
    count of finished epochs, and moves ``iterator`` to the saved position. The arrays are read
    straight onto the shardings of ``state`` (the fresh state of this run, also the template of
    shapes and dtypes). Without a checkpoint: ``(state, 0)``, the iterator untouched.

    The step's dropout key is derived from ``state.rng`` (the run's seed), so it is not stored.
    Raises ValueError when the checkpoint does not fit this run's network or optimiser.
    """
    step = manager.latest_step()
    if step is None:
        return state, 0
    abstract = jax.tree.map(
        ocp.utils.to_shape_dtype_struct,
        {MODEL_ITEM: _state_model_item(state), OPT_ITEM: state.opt_state},
    )
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    MODEL_ITEM: ocp.args.StandardRestore(abstract[MODEL_ITEM]),
                    OPT_ITEM: ocp.args.StandardRestore(abstract[OPT_ITEM]),
                    TRAIN_ITEM: ocp.args.JsonRestore(),
                    DATA_ITEM: grain.checkpoint.CheckpointRestore(iterator),
                }
            ),
        )
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"checkpoint {manager.directory / str(step)} does not fit this run: {err}"
        ) from err
    model = nnx.merge_state(state.params, state.batch_stats)
    nnx.replace_by_pure_dict(model, restored[MODEL_ITEM])
    params, batch_stats = nnx.split_state(model, nnx.Param, nnx.BatchStat)
    restored_state = state.replace(
        step=jax.device_put(np.int32(step), state.step.sharding),
        params=params,
        batch_stats=batch_stats,
        opt_state=restored[OPT_ITEM],
    )
    return restored_state, int(restored[TRAIN_ITEM]["epoch"])
