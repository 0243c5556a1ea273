"""Checkpoints on disk (orbax): one layout for converted models and training states.

A checkpoint step directory holds composite items: ``model`` (the network's parameters and BN
statistics as a nested dict of arrays, the NNX state's pure-dict form) and ``meta`` (JSON: at least
``variant`` and ``model_config``). A resumable training checkpoint adds ``opt_state`` (the
optimiser state), ``train`` (JSON: ``step``, ``epoch``) and ``data_iter`` (the grain iterator);
``load_model`` reads only ``model`` and ``meta``.

Every restore is verified: ``meta`` holds a digest (BLAKE2b of the dtype, shape and bytes) of every
array of the ``model`` and ``opt_state`` items, checked against what was read, and a non-finite
weight is refused with its name. Checkpoints whose ``meta`` holds no digests still load,
unverified by digest but checked for non-finite weights. A file that cannot be
read (truncated, missing, damaged compressed data) is a UserError naming the checkpoint and the
array, as is a digest mismatch. Resuming skips a damaged newest step for the newest intact one.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental import multihost_utils

from hpe_jax.cli import one_line
from hpe_jax.errors import UserError
from hpe_jax.models import HPENet, get_config
from hpe_jax.models.config import upgrade_model_config

if TYPE_CHECKING:
    from hpe_jax.train_state import TrainState

MODEL_ITEM = "model"
META_ITEM = "meta"
OPT_ITEM = "opt_state"
TRAIN_ITEM = "train"
DATA_ITEM = "data_iter"
DIGESTS_KEY = "digests"
IMAGE_SIZE_KEY = "image_size"  # meta: side (pixels) of the crops a training run fed the network
_STEP_DIR = re.compile(r"^\d+$")
# What a checkpoint step directory holds: its items and orbax's own files. ``--overwrite`` replaces
# a directory holding these alone.
CHECKPOINT_ENTRIES = frozenset(
    (
        MODEL_ITEM,
        META_ITEM,
        OPT_ITEM,
        TRAIN_ITEM,
        DATA_ITEM,
        "_CHECKPOINT_METADATA",
        "commit_success.txt",
    )
)
# A tensorstore read failure (absl status), e.g. 'DATA_LOSS: Error reading "key/0.0" in ...'.
_STORE_STATUS = re.compile(r"^[A-Z][A-Z_]+: ")
# The JSON specs tensorstore appends to such a message: `` [tensorstore_spec='{...}']`` (kilobytes).
_STORE_SPECS = re.compile(r"\s*\[tensorstore_spec(\[\d+\])?='.*$")
# What a damaged step directory is renamed to when a resume falls back past it: not a step name
# for orbax, ``resolve_step_dir`` or an evaluation sweep.
DAMAGED_SUFFIX = ".damaged"
# The variables a model checkpoint holds (a tuple filter: either kind).
MODEL_VARIABLES = (nnx.Param, nnx.BatchStat)


def model_state(model: nnx.Module) -> dict[str, Any]:
    """The parameters and BN statistics of ``model`` as a nested dict of arrays."""
    return nnx.to_pure_dict(nnx.state(model, MODEL_VARIABLES))


def _host_array(leaf: Any) -> np.ndarray:
    """The full value of ``leaf`` on this host (a replicated array's local copy)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return np.asarray(leaf.addressable_shards[0].data)
    return np.asarray(leaf)


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(jax.tree_util.keystr(k), v) for k, v in jax.tree_util.tree_leaves_with_path(tree)]


def array_digests(tree: Any) -> dict[str, str]:
    """{key path: BLAKE2b hex digest of the array's dtype, shape and bytes} of every leaf."""
    digests = {}
    for key, leaf in _leaves(tree):
        value = np.ascontiguousarray(_host_array(leaf))
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{value.dtype.str}{value.shape}".encode())
        h.update(value.tobytes())
        digests[key] = h.hexdigest()
    return digests


def verify_arrays(where: Path, item: str, tree: Any, digests: dict[str, str] | None) -> None:
    """Raises a UserError naming the array of ``tree`` (item ``item`` of the checkpoint at
    ``where``) whose digest differs from ``digests`` (when given), or, for ``model``, a
    non-finite parameter or statistic."""
    if digests is not None:
        found = array_digests(tree)
        if found.keys() != digests.keys():
            raise UserError(
                f"checkpoint {where}: item {item!r} does not hold the arrays its digests list"
            )
        for key, digest in found.items():
            if digest != digests[key]:
                raise UserError(
                    f"checkpoint {where}: array {item}{key} is damaged (its bytes differ from "
                    "the digest saved with it)"
                )
    if item == MODEL_ITEM:
        for key, leaf in _leaves(tree):
            value = _host_array(leaf)
            if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
                raise UserError(f"checkpoint {where}: weight {key} holds NaN or Inf values")


def _innermost(err: BaseException) -> BaseException:
    """The deepest exception behind ``err`` (its cause, or else its context, repeatedly)."""
    seen = [err]
    while (nxt := err.__cause__ or err.__context__) is not None and nxt not in seen:
        seen.append(nxt)
        err = nxt
    return err


def read_problem(err: BaseException, what: str) -> str:
    """One line saying why ``what`` (e.g. "item 'model'") could not be read: a damaged file
    (tensorstore names the array's key and the file, e.g. ``DATA_LOSS: Error reading
    "backbone.stem.conv.kernel/0.0" in OCDBT database at local file ...``), or a structure that
    does not fit (orbax's message about the expected tree)."""
    if isinstance(err, UserError):
        return one_line(str(err))
    cause = _innermost(err)
    if _STORE_STATUS.match(str(cause)):
        first = _STORE_SPECS.sub("", one_line(str(cause), max_parts=1))
        return f"{what} is damaged: {first}"
    message = one_line(str(err), max_parts=2)
    return (
        f"{what} cannot be read (damaged, or not of this network): {type(err).__name__}: {message}"
    )


def _model_meta(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {"variant": config.variant, "model_config": config.to_dict()}


def _foreign_entries(directory: Path) -> list[str]:
    """The names in ``directory`` that are not part of a checkpoint (``CHECKPOINT_ENTRIES``)."""
    return sorted(p.name for p in directory.iterdir() if p.name not in CHECKPOINT_ENTRIES)


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")


def check_checkpoint_output(output: Path, overwrite: bool) -> None:
    """Refuses an ``output`` that exists and is not empty, unless ``overwrite`` is given and it
    is a checkpoint step directory holding nothing else (only a checkpoint is ever replaced)."""
    if not output.exists():
        return
    if not output.is_dir():
        raise UserError(f"--output {output} is a file; expected a new or empty directory")
    contents = sorted(p.name for p in output.iterdir())
    if not contents:
        return
    if not overwrite:
        raise UserError(
            f"--output {output} is not empty ({_shown(contents)}); not replaced: name a new "
            "directory, or pass --overwrite to replace a checkpoint there"
        )
    foreign = _foreign_entries(output) if (output / MODEL_ITEM).is_dir() else contents
    if foreign:
        raise UserError(
            f"--output {output} holds files that are not a checkpoint ({_shown(foreign)}); not "
            "replaced even with --overwrite: move them away or name a new directory"
        )


def save_model(
    directory: str | Path,
    model: HPENet,
    config: ml_collections.ConfigDict,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Writes ``model`` (with its model config) as a checkpoint step directory at ``directory``,
    replacing a checkpoint there (entry points call ``check_checkpoint_output`` first). A
    directory holding anything else is refused (UserError naming it), never deleted."""
    directory = Path(directory).absolute()
    if directory.is_dir() and (foreign := _foreign_entries(directory)):
        raise UserError(
            f"{directory} holds files that are not a checkpoint ({_shown(foreign)}); not replaced"
        )
    state = model_state(model)
    meta = {
        **_model_meta(config),
        **(extra_meta or {}),
        DIGESTS_KEY: {MODEL_ITEM: array_digests(state)},
    }
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        ckptr.save(
            directory,
            args=ocp.args.Composite(
                **{
                    MODEL_ITEM: ocp.args.StandardSave(state),
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
        try:
            restored = ckptr.restore(
                step_dir, args=ocp.args.Composite(**{META_ITEM: ocp.args.JsonRestore()})
            )
        except Exception as err:  # orbax raises many types for a damaged or missing item
            raise UserError(
                f"checkpoint {step_dir}: {read_problem(err, f'item {META_ITEM!r}')}"
            ) from err
    meta = restored[META_ITEM]
    if not isinstance(meta, dict):
        raise UserError(f"checkpoint {step_dir}: item {META_ITEM!r} is not a JSON object")
    return dict(meta)


def restore_model_state(path: str | Path, model: HPENet) -> None:
    """Loads the ``model`` item of the checkpoint at ``path`` into ``model`` in place.

    Raises a UserError naming every missing, unexpected or mis-shaped entry, the array whose
    file cannot be read, or the array that fails verification (module docstring).
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
        except Exception as err:  # orbax and tensorstore raise many types, also a bare Exception
            problem = read_problem(err, f"item {MODEL_ITEM!r}")
            raise UserError(f"checkpoint {step_dir}: {problem}") from err
    digests = read_meta(step_dir).get(DIGESTS_KEY, {}).get(MODEL_ITEM)
    verify_arrays(step_dir, MODEL_ITEM, restored[MODEL_ITEM], digests)
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
        raise UserError(
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
    the newest ``max_to_keep``.

    The temporary folders of an interrupted save (``<step>.orbax-checkpoint-tmp*``, as orbax
    names them) are removed first, each with a warning: the caller holds the workdir's lock, so
    no live save owns them. (orbax's ``cleanup_tmp_directories`` option removes them in the
    background, finished only before the first save; this removal is done on return.)
    """
    directory = Path(directory).absolute()
    if jax.process_index() == 0:
        for tmp in ocp.path.step.all_temporary_paths(directory):
            logging.warning("removing %s, left by an interrupted checkpoint save", tmp.get())
            tmp.get().rmtree()
    return ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
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
    reads) and ``meta`` (variant, ``model_config``, ``extra_meta`` and the arrays' digests,
    computed here on the host). With ``iterator`` (and
    ``epoch``, the count of finished epochs) the checkpoint is resumable: the optimiser state, the
    step and epoch, and the data iterator's position are added.
    """
    step = int(state.step)
    model_item = _state_model_item(state)
    digests = {MODEL_ITEM: array_digests(model_item)}
    if iterator is not None:
        digests[OPT_ITEM] = array_digests(state.opt_state)
    meta = {**_model_meta(model_config), **(extra_meta or {}), DIGESTS_KEY: digests}
    items = {
        MODEL_ITEM: ocp.args.StandardSave(model_item),
        META_ITEM: ocp.args.JsonSave(meta),
    }
    if iterator is not None:
        items[OPT_ITEM] = ocp.args.StandardSave(state.opt_state)
        items[TRAIN_ITEM] = ocp.args.JsonSave({"step": step, "epoch": epoch})
        items[DATA_ITEM] = grain.checkpoint.CheckpointSave(iterator)
    manager.save(step, args=ocp.args.Composite(**items))


def _restore_step(
    manager: ocp.CheckpointManager,
    step: int,
    state: TrainState,
    iterator: grain.DatasetIterator,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The verified model and optimiser items of ``step`` and its ``train`` item; moves
    ``iterator`` to the step's position."""
    where = Path(manager.directory) / str(step)
    abstract = jax.tree.map(
        ocp.utils.to_shape_dtype_struct,
        {MODEL_ITEM: _state_model_item(state), OPT_ITEM: state.opt_state},
    )
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            **{
                MODEL_ITEM: ocp.args.StandardRestore(abstract[MODEL_ITEM]),
                OPT_ITEM: ocp.args.StandardRestore(abstract[OPT_ITEM]),
                META_ITEM: ocp.args.JsonRestore(),
                TRAIN_ITEM: ocp.args.JsonRestore(),
                DATA_ITEM: grain.checkpoint.CheckpointRestore(iterator),
            }
        ),
    )
    digests = dict(restored[META_ITEM]).get(DIGESTS_KEY, {})
    for item in (MODEL_ITEM, OPT_ITEM):
        verify_arrays(where, item, restored[item], digests.get(item))
    return restored, dict(restored[TRAIN_ITEM])


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> list[str]:
    """Renames the step directories ``steps`` of ``manager`` to ``<step>.damaged`` (or
    ``<step>.damaged.<n>``, the first name not taken), so that the manager no longer lists them
    and saves those steps anew (orbax skips a save of a step not newer than its latest one).
    Process 0 renames and returns the new paths (other processes: an empty list); every process
    then reloads the manager."""
    directory = manager.directory  # an epath.Path: also a bucket
    moved = []
    if jax.process_index() == 0:
        for step in sorted(steps):
            target = directory / f"{step}{DAMAGED_SUFFIX}"
            n = 1
            while target.exists():
                target = directory / f"{step}{DAMAGED_SUFFIX}.{n}"
                n += 1
            (directory / str(step)).rename(target)
            moved.append(str(target))
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("hpe_jax.checkpoint: damaged steps set aside")
    manager.reload()
    return moved


def restore_train_state(
    manager: ocp.CheckpointManager, state: TrainState, iterator: grain.DatasetIterator
) -> tuple[TrainState, int]:
    """Resumes from the newest intact step of ``manager``: returns the restored training state
    and the count of finished epochs, and moves ``iterator`` to the saved position. The arrays
    are read straight onto the shardings of ``state`` (the fresh state of this run, also the
    template of shapes and dtypes) and verified (module docstring). A newer step that cannot be
    read or verified is skipped with a warning naming it, and once an older step is restored,
    renamed to ``<step>.damaged`` (kept, no longer a step: the run saves that step anew).
    Without a checkpoint: ``(state, 0)``, the iterator untouched.

    The step's dropout key is derived from ``state.rng`` (the run's seed), so it is not stored.
    Raises UserError when no step can be restored, with the newest step's problem (e.g. a
    checkpoint that does not fit this run's network or optimiser).
    """
    problems = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            restored, train = _restore_step(manager, step, state, iterator)
        except Exception as err:  # orbax, tensorstore and grain raise many types for damage
            problem = read_problem(err, "its data")
            if not isinstance(err, UserError):
                problem = f"checkpoint {Path(manager.directory) / str(step)}: {problem}"
            problems.append(problem)
            logging.warning("cannot resume from step %d (%s); trying an older step", step, problem)
            continue
        if problems:
            moved = _set_aside(manager, [s for s in manager.all_steps() if s > step])
            logging.warning(
                "resumed from step %d; the damaged newer step(s) are kept as %s (not resumed "
                "from; delete them when not needed)",
                step,
                ", ".join(moved) or "<step>.damaged",
            )
        model = nnx.merge_state(state.params, state.batch_stats)
        nnx.replace_by_pure_dict(model, restored[MODEL_ITEM])
        params, batch_stats = nnx.split_state(model, nnx.Param, nnx.BatchStat)
        restored_state = state.replace(
            step=jax.device_put(np.int32(step), state.step.sharding),
            params=params,
            batch_stats=batch_stats,
            opt_state=restored[OPT_ITEM],
        )
        return restored_state, int(train["epoch"])
    if problems:
        raise UserError(
            f"no checkpoint in {manager.directory} can be resumed; the newest: {problems[0]} "
            "(to start afresh, use a new workdir)"
        )
    return state, 0
