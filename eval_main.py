"""Evaluates head-pose checkpoints: MAE per angle, their mean, MAEV and geodesic error (degrees).

    python eval_main.py --config=configs/eval_aflw2000.py --checkpoint=PATH \\
        --config.data.val_dir=SHARDS [--config.key=value ...]

PATH is an orbax checkpoint step directory, an original PyTorch checkpoint file (.pkl / .pth /
.pt, converted on the fly as ``config.model.variant``), or a directory: a training workdir (every
step in ``checkpoints/`` and ``best/``), a directory of numbered steps, or the original's snapshot
folder (``1.pkl`` ... ``N.pkl``). Every checkpoint found is evaluated and, for several, the best
(lowest mean MAE) is named, as the original's per-epoch sweep.

Uses the evaluation fields of the training configs (``config.data.val_dir`` / ``val_split`` /
``val_mode`` / ``val_input_size`` / ``image_size``, ``config.eval_batch_size``,
``config.model.variant``, ``config.progress``), so a training recipe evaluates its own
validation set as it is. Prints a table and writes the same numbers as JSON to ``--output``,
by default ``eval_<dataset>_<split>.json`` in PATH (a directory) or ``<stem>_eval_<dataset>_
<split>.json`` beside PATH (a file). One process, one device.
"""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path
from typing import Any

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from hpe_jax.data.layout import read_metadata
from hpe_jax.data.pipeline import EVAL_MODES, make_eval_loader
from hpe_jax.evaluate import (
    evaluate_batches,
    format_table,
    list_checkpoints,
    load_network,
    make_predictor,
    write_report,
)
from hpe_jax.host_memory import retain_freed_host_memory
from hpe_jax.models import HPENet

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Evaluation configuration file.", lock_config=True)
flags.DEFINE_string(
    "checkpoint", None, "Checkpoint, PyTorch checkpoint file, or a directory of them."
)
flags.DEFINE_string("output", None, "JSON report path (default: beside the checkpoint).")
flags.mark_flags_as_required(["config", "checkpoint"])

# Errors of unusable inputs (files, their contents, wrong variant): reported in one message.
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError)
MAX_MESSAGE_LINES = 12
# Datasets whose records are face crops without a face box (val_mode 'biwi' only).
BOXLESS_DATASETS = ("biwi",)


class EvalError(Exception):
    """An unusable checkpoint, data folder or config; the message names the path and problem."""


def _short(err: BaseException) -> str:
    """The message of ``err``, cut to ``MAX_MESSAGE_LINES`` lines."""
    lines = str(err).splitlines() or [type(err).__name__]
    if len(lines) > MAX_MESSAGE_LINES:
        more = len(lines) - MAX_MESSAGE_LINES
        lines = [*lines[:MAX_MESSAGE_LINES], f"  ... ({more} more lines)"]
    return "\n".join(lines)


def report_path(checkpoint: str | Path, dataset: str, split: str) -> Path:
    """Default JSON report path: ``eval_<dataset>_<split>.json`` inside a checkpoint directory,
    ``<stem>_eval_<dataset>_<split>.json`` beside a checkpoint file."""
    checkpoint = Path(checkpoint).absolute()
    name = f"eval_{dataset}_{split}.json"
    if checkpoint.is_file():
        return checkpoint.with_name(f"{checkpoint.stem}_{name}")
    return checkpoint / name


def _check_data(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The metadata of the evaluation split; EvalError when it cannot be evaluated as configured."""
    data = config.data
    if not data.val_dir:
        raise EvalError(
            "no evaluation data: set --config.data.val_dir to a folder of converted shards "
            "(python -m data_prep)"
        )
    if data.val_mode not in EVAL_MODES:
        raise EvalError(f"config.data.val_mode must be one of {EVAL_MODES}, got {data.val_mode!r}")
    try:
        meta = read_metadata(data.val_dir, data.val_split)
    except (OSError, ValueError) as err:
        raise EvalError(f"evaluation data: {_short(err)}") from err
    dataset = meta.get("dataset")
    if data.val_mode == "aflw2000" and dataset in BOXLESS_DATASETS:
        raise EvalError(
            f"{data.val_dir}: {dataset} records are face crops without a face box; evaluate them "
            "with val_mode 'biwi' (configs/eval_biwi.py)"
        )
    return meta


def _load(path: Path, variant: str) -> HPENet:
    try:
        return load_network(path, variant)
    except LOAD_ERRORS as err:
        message = _short(err)
        if "variant" in message:
            message += "\n(the variant is set with --config.model.variant=s|m|l)"
        raise EvalError(f"cannot evaluate checkpoint {path}:\n  {message}") from err


def run(
    config: ml_collections.ConfigDict, checkpoint: str | Path, output: str | Path | None = None
) -> dict[str, Any]:
    """Evaluates every checkpoint at ``checkpoint`` (see the module docstring) on the validation
    split of ``config``, prints the table (and the best checkpoint of several), writes the JSON
    report and returns it.

    The report: ``data_dir``, ``split``, ``dataset``, ``val_mode``, ``image_size``,
    ``input_size``, ``variant``, ``checkpoints`` ({name: {yaw, pitch, roll, mean_mae, maev,
    geodesic (degrees), num_images, path}}, in evaluation order) and ``best`` (the name with the
    lowest ``mean_mae``).

    Raises:
      EvalError: missing or unusable checkpoint or data, or a checkpoint of another variant.
    """
    data = config.data
    meta = _check_data(config)
    try:
        found = list_checkpoints(checkpoint)
    except (OSError, ValueError) as err:
        raise EvalError(_short(err)) from err
    num_batches = math.ceil(int(meta["num_records"]) / config.eval_batch_size)
    results: dict[str, dict[str, Any]] = {}
    for index, (name, path) in enumerate(found):
        if config.progress:
            print(f"[{index + 1}/{len(found)}] {path}", file=sys.stderr)
        model = _load(path, config.model.variant)
        loader = make_eval_loader(
            data.val_dir,
            data.val_split,
            batch_size=config.eval_batch_size,
            mode=data.val_mode,
            target_size=data.image_size,
            input_size=data.val_input_size,
            worker_count=0,
            num_threads=data.num_threads,
            shard_index=0,
            shard_count=1,
        )
        metrics = evaluate_batches(
            make_predictor(model), loader, total=num_batches, progress=config.progress
        )
        results[name] = {**metrics, "path": str(path)}
    best = min(results, key=lambda n: results[n]["mean_mae"])
    dataset = str(meta.get("dataset") or "data")
    report = {
        "data_dir": str(Path(data.val_dir).absolute()),
        "split": data.val_split,
        "dataset": dataset,
        "val_mode": data.val_mode,
        "image_size": data.image_size,
        "input_size": data.val_input_size if data.val_mode == "biwi" else None,
        "variant": config.model.variant,
        "checkpoints": results,
        "best": best,
    }
    print(format_table(results))
    if len(results) > 1:
        print(f"best: {best} (mean MAE {results[best]['mean_mae']:.3f} deg)")
    out = Path(output) if output else report_path(checkpoint, dataset, data.val_split)
    try:
        write_report(out, report)
    except OSError as err:
        raise EvalError(f"cannot write the report {out}: {err}") from err
    print(f"wrote {out}")
    return report


def main(argv: list[str]) -> None:
    del argv
    retain_freed_host_memory()  # before the first computation: hpe_jax/host_memory.py
    logging.set_verbosity(logging.WARNING)  # orbax and grain log every operation at INFO
    try:
        run(FLAGS.config, FLAGS.checkpoint, FLAGS.output)
    except EvalError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    app.run(main)
