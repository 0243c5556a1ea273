"""One check of a whole training or evaluation config before any work is done.

``check_train_config`` and ``check_eval_config`` raise a ``UserError`` naming the first bad key
(``config.batch_size``), its value and what was expected; with data checks, the datasets are
opened too (a missing folder, split or damaged metadata is reported before a model is built).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import ml_collections

from hpe_jax.data.pipeline import EVAL_MODES
from hpe_jax.errors import UserError
from hpe_jax.models.config import BACKBONES
from hpe_jax.models.kernels import KERNEL_CHOICES
from hpe_jax.pose import ANGLE_ERRORS

LR_SCHEDULES = ("constant", "cosine")
COMPUTE_DTYPES = ("float32", "bfloat16")
MIN_IMAGE_SIZE = 32


def _fail(key: str, value: Any, expected: str) -> UserError:
    return UserError(f"config.{key} = {value!r}: expected {expected}")


def _integer(config: ml_collections.ConfigDict, key: str, minimum: int) -> int:
    value = _get(config, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(key, value, f"an integer >= {minimum}")
    return value


def _number(
    config: ml_collections.ConfigDict,
    key: str,
    *,
    low: float,
    high: float = math.inf,
    open_low: bool,
) -> float:
    value = _get(config, key)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and value <= high
    if not ok:
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        upper = "" if high == math.inf else f" and <= {high:g}"
        raise _fail(key, value, f"a finite number {bound}{upper}")
    return float(value)


def _choice(config: ml_collections.ConfigDict, key: str, choices: tuple[str, ...]) -> str:
    value = _get(config, key)
    if value not in choices:
        raise _fail(key, value, f"one of {', '.join(choices)}")
    return value


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if part not in node:
            raise UserError(f"config.{key} is missing; the recipes build on configs/default.py")
        node = node[part]
    return node


def _check_dataset(config: ml_collections.ConfigDict, dir_key: str, split_key: str) -> int:
    """The record count of the split ``config.<split_key>`` of ``config.<dir_key>``."""
    from hpe_jax.data.source import num_records

    path, split = _get(config, dir_key), _get(config, split_key)
    try:
        return num_records(path, split)
    except (OSError, ValueError) as err:
        raise UserError(f"config.{dir_key} = {path!r}: {err}") from err


def _check_common(config: ml_collections.ConfigDict, check_data: bool) -> None:
    """The fields training and evaluation share; with ``check_data``, the validation dataset."""
    _choice(config, "model.variant", tuple(BACKBONES))
    _choice(config, "model.dtype", COMPUTE_DTYPES)
    _choice(config, "model.kernels", KERNEL_CHOICES)
    _integer(config, "data.image_size", MIN_IMAGE_SIZE)
    _integer(config, "eval_batch_size", 1)
    mode = _choice(config, "data.val_mode", EVAL_MODES)
    if mode == "biwi" and _integer(config, "data.val_input_size", 1) < config.data.image_size:
        raise _fail(
            "data.val_input_size",
            config.data.val_input_size,
            f"at least config.data.image_size ({config.data.image_size}) in biwi mode",
        )
    _integer(config, "data.worker_count", 0)
    _integer(config, "data.num_threads", 0)
    if check_data and _get(config, "data.val_dir"):
        _check_dataset(config, "data.val_dir", "data.val_split")


def check_eval_config(config: ml_collections.ConfigDict) -> None:
    """Checks the fields ``eval_main.py`` uses; ``config.data.val_dir`` must name a dataset
    holding ``config.data.val_split``."""
    _check_common(config, check_data=True)
    if not config.data.val_dir:
        raise _fail("data.val_dir", config.data.val_dir, "the dataset to evaluate on")


def check_device_split(config: ml_collections.ConfigDict) -> None:
    """Checks that ``config.batch_size`` and ``config.eval_batch_size`` (global batches) split
    evenly over the devices JAX sees (ask only after ``start_process``)."""
    num_devices = jax.device_count()
    for key in ("batch_size", "eval_batch_size"):
        if config[key] % num_devices:
            raise _fail(key, config[key], f"a multiple of the device count {num_devices}")


def check_train_config(config: ml_collections.ConfigDict, *, runtime: bool = True) -> None:
    """Checks every field the training loop uses. With ``runtime`` (after ``start_process``:
    it asks JAX for the devices) the batch sizes must divide over the devices, the training
    dataset must hold at least one batch and the validation dataset (if named) its split;
    without it (before the process joins a run, or the synthetic job's data exist) the values
    alone are checked. A local ``init_from`` must exist (a bucket path is left to the loader)."""
    _check_common(config, runtime)
    for key in ("batch_size", "eval_batch_size"):
        _integer(config, key, 1)
    if runtime:
        check_device_split(config)
    _integer(config, "num_epochs", 1)
    _number(config, "learning_rate", low=0.0, open_low=True)
    _number(config, "head_lr_multiplier", low=0.0, open_low=True)
    _number(config, "weight_decay", low=0.0, open_low=False)
    _number(config, "loss_alpha", low=0.0, open_low=False)
    _number(config, "data.augment", low=0.0, high=1.0, open_low=False)
    _choice(config, "lr_schedule", LR_SCHEDULES)
    _integer(config, "warmup_steps", 0)
    _choice(config, "val_metric", tuple(ANGLE_ERRORS))
    _integer(config, "log_every_steps", 1)
    _integer(config, "checkpoint_every_steps", 0)
    _integer(config, "keep_checkpoints", 1)
    if _get(config, "max_steps") != -1:
        _integer(config, "max_steps", 1)
    init_from = _get(config, "init_from")
    if init_from and "://" not in init_from and not Path(init_from).exists():
        raise _fail("init_from", init_from, "an existing checkpoint (or '' for none)")
    synthetic = _get(config, "data.synthetic")
    if synthetic is not None:
        _integer(config, "data.synthetic.num_train", 1)
        _integer(config, "data.synthetic.num_test", 1)
        _integer(config, "data.synthetic.image_size", 16)
        _integer(config, "data.synthetic.seed", 0)
    if not runtime:
        return
    if not _get(config, "data.train_dir"):
        raise _fail("data.train_dir", config.data.train_dir, "the training dataset")
    count = _check_dataset(config, "data.train_dir", "data.train_split")
    if count < config.batch_size:
        raise _fail(
            "batch_size",
            config.batch_size,
            f"at most the {count} records of {config.data.train_dir} ({config.data.train_split})",
        )
