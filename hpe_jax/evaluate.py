"""Evaluation: angle errors of a network over an evaluation loader, the checkpoint sweep of
``eval_main.py`` and its report."""

from __future__ import annotations

import functools
import json
import math
import pickle
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from hpe_jax.cli import one_line
from hpe_jax.errors import UserError
from hpe_jax.pose import ANGLE_ERRORS, geodesic, maev, rotation_from_euler

if TYPE_CHECKING:
    from hpe_jax.models import HPENet

METRIC_NAMES = ("yaw", "pitch", "roll", "mean_mae", "maev", "geodesic")
# Files of the original's checkpoints (torch.save): ``<epoch>.pkl`` in its snapshot folders.
TORCH_SUFFIXES = (".pkl", ".pth", ".pt")
# Where a training workdir keeps its checkpoints (hpe_jax.train): every saved step, the best one.
WORKDIR_SUBDIRS = ("checkpoints", "best")
# Errors of unusable inputs (files, their contents, wrong variant): reported in one message.
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError)
MAX_MESSAGE_LINES = 12


def _all_rows(x: jax.Array | np.ndarray) -> np.ndarray:
    """Every row of a batch on this host: a global array spanning processes is gathered."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def evaluate_batches(
    predict: Callable[[jax.Array], jax.Array | np.ndarray],
    batches: Iterable[dict[str, jax.Array]],
    *,
    total: int | None = None,
    progress: bool = True,
    angle_error: str = "plain",
) -> dict[str, Any]:
    """Errors of ``predict`` over the global batches of an evaluation loader
    (``hpe_jax.data.loaders.make_loader(config, "val", ...)``; in a multi-process run every
    process calls it, and each gets the errors over all the records).

    Args:
      predict: (B, S, S, 3) normalised images -> (B, 3) degrees (yaw, pitch, roll).
      batches: dicts with ``image``, ``angles`` (B, 3) degrees and ``mask`` (B,) (False on padding).
      angle_error: ``plain`` (``|pred - gt|``, the original's test script) or ``wrapped`` (the
        smallest of ``|d|``, ``|d +/- 360|``, ``|d +/- 180|``: its validation during training);
        ``hpe_jax.pose.ANGLE_ERRORS``.
    Returns:
      ``yaw``, ``pitch``, ``roll`` (MAE by ``angle_error``, degrees), ``mean_mae`` (their mean),
      ``angle_error`` (its name), ``maev`` (mean axis-vector error, rows of the rotation
      matrices, degrees), ``geodesic`` (mean geodesic error, degrees), ``num_images``.
    """
    if angle_error not in ANGLE_ERRORS:
        raise UserError(f"angle_error must be one of {tuple(ANGLE_ERRORS)}, got {angle_error!r}")
    angle_errors = ANGLE_ERRORS[angle_error]
    sums = np.zeros(6, np.float64)  # |yaw|, |pitch|, |roll|, maev, geodesic, count
    bar = tqdm(batches, total=total, desc="eval", unit="batch", disable=not progress)
    for batch in bar:
        mask = _all_rows(batch["mask"]).astype(bool)
        pred = _all_rows(predict(batch["image"])).astype(np.float64)[mask]
        gt = _all_rows(batch["angles"]).astype(np.float64)[mask]
        r_pred, r_gt = rotation_from_euler(pred), rotation_from_euler(gt)
        sums[:3] += angle_errors(pred, gt).sum(axis=0)
        sums[3] += maev(r_pred, r_gt).sum()
        sums[4] += geodesic(r_pred, r_gt).sum()
        sums[5] += mask.sum()
    count = sums[5]
    if count == 0:
        raise UserError("the evaluation data holds no images")
    per_angle = sums[:3] / count
    return {
        "yaw": float(per_angle[0]),
        "pitch": float(per_angle[1]),
        "roll": float(per_angle[2]),
        "mean_mae": float(per_angle.mean()),
        "angle_error": angle_error,
        "maev": float(sums[3] / count),
        "geodesic": float(sums[4] / count),
        "num_images": int(count),
    }


def format_table(rows: dict[str, dict[str, Any]], failed: dict[str, str] | None = None) -> str:
    """A fixed-width table, one row per evaluated checkpoint, errors in degrees; then one row
    per checkpoint of ``failed`` ({name: why}) that could not be evaluated."""
    header = f"{'checkpoint':<24}" + "".join(f"{n:>10}" for n in METRIC_NAMES) + f"{'images':>8}"
    lines = [header, "-" * len(header)]
    for name, m in rows.items():
        values = "".join(f"{m[n]:>10.3f}" for n in METRIC_NAMES)
        lines.append(f"{name:<24}{values}{m['num_images']:>8d}")
    lines += [f"{name:<24}  failed: {why}" for name, why in (failed or {}).items()]
    return "\n".join(lines)


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    """Writes ``report`` as indented JSON at ``path``."""
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def is_torch_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a file named like a PyTorch checkpoint (``TORCH_SUFFIXES``)."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in TORCH_SUFFIXES


def load_network(path: str | Path, variant: str | None = None) -> HPENet:
    """The network at ``path`` in inference mode: an original PyTorch checkpoint file (converted,
    as ``variant``, default 's') or an orbax checkpoint (see ``hpe_jax.checkpoint.load_model``;
    a ``variant`` other than the stored one is an error)."""
    if Path(path).is_file():
        from hpe_jax.convert_torch import convert_checkpoint

        return convert_checkpoint(path, variant or "s")
    from hpe_jax.checkpoint import load_model

    return load_model(path, variant=variant)


def _numbered_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    from hpe_jax.checkpoint import MODEL_ITEM

    found = []
    for child in directory.iterdir():
        if child.is_dir() and child.name.isdecimal() and (child / MODEL_ITEM).is_dir():
            found.append((int(child.name), child))
        elif is_torch_checkpoint(child) and child.stem.isdecimal():
            found.append((int(child.stem), child))
    return sorted(found)


def list_checkpoints(path: str | Path) -> list[tuple[str, Path]]:
    """The checkpoints at ``path`` as (name, path) pairs.

    - an orbax step directory (it holds a ``model`` item) or a PyTorch checkpoint file: itself,
      named by its file name;
    - any other directory: every numbered checkpoint (orbax step directories ``<step>`` and
      PyTorch files ``<epoch>.pkl`` / ``.pth`` / ``.pt``) in it and in its ``checkpoints`` and
      ``best`` folders (a training workdir), in that order, by number; named by their path
      relative to ``path`` (``checkpoints/1200``, ``best/1200``, ``7.pkl``).

    Raises FileNotFoundError when ``path`` does not exist or holds no checkpoint, ValueError for a
    file that is not named like a PyTorch checkpoint.
    """
    from hpe_jax.checkpoint import MODEL_ITEM

    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    if path.is_file():
        if not is_torch_checkpoint(path):
            raise UserError(
                f"{path} is a file but not a PyTorch checkpoint (expected a name ending in "
                f"{', '.join(TORCH_SUFFIXES)})"
            )
        return [(path.name, path)]
    if (path / MODEL_ITEM).is_dir():
        return [(path.name, path)]
    found = []
    for sub in ("", *WORKDIR_SUBDIRS):
        folder = path / sub
        if folder.is_dir():
            found += [(str(p.relative_to(path)), p) for _, p in _numbered_checkpoints(folder)]
    if not found:
        raise FileNotFoundError(
            f"{path} holds no checkpoint: expected an orbax step directory (with a "
            f"'{MODEL_ITEM}' item), a directory of numbered steps or of numbered PyTorch "
            f"files, a training workdir ({' and '.join(WORKDIR_SUBDIRS)} folders of steps), or "
            f"a PyTorch checkpoint file ({', '.join(TORCH_SUFFIXES)})"
        )
    return found


@functools.cache
def _jitted_predict() -> Callable[..., jax.Array]:
    from hpe_jax.compiler_options import compiler_options
    from hpe_jax.train_state import predict_angles

    return jax.jit(predict_angles, static_argnames="graphdef", compiler_options=compiler_options())


def make_predictor(model: HPENet) -> Callable[[jax.Array], np.ndarray]:
    """``predict`` for ``evaluate_batches``: (B, S, S, 3) normalised images -> (B, 3) degrees
    (yaw, pitch, roll) with ``model`` (in inference mode). One compiled function serves every
    network of the same structure and batch shape, so a sweep over checkpoints compiles once."""
    from flax import nnx

    graphdef, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    predict = _jitted_predict()
    return lambda images: np.asarray(predict(params, batch_stats, rest, images, graphdef=graphdef))


class EvalError(UserError):
    """An unusable checkpoint, data folder or config; the message names the path and problem."""


def short_message(err: BaseException) -> str:
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


def check_eval_data(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``dataset`` (its name, ``hpe_jax.data.source.dataset_label``), ``dataset_dir`` (its
    version folder) and ``num_records`` of the evaluation split of ``config.data``; EvalError
    when it cannot be evaluated as configured."""
    from hpe_jax.data.pipeline import EVAL_MODES
    from hpe_jax.data.source import check_split, dataset_label, has_boxes, open_dataset

    data = config.data
    if not data.val_dir:
        raise EvalError(
            "no evaluation data: set --config.data.val_dir to a TFDS dataset written by "
            "python -m data_prep"
        )
    if data.val_mode not in EVAL_MODES:
        raise EvalError(f"config.data.val_mode must be one of {EVAL_MODES}, got {data.val_mode!r}")
    try:
        builder = open_dataset(data.val_dir)
        count = check_split(builder, data.val_split)
    except (OSError, ValueError) as err:
        raise EvalError(f"evaluation data: {short_message(err)}") from err
    dataset = dataset_label(builder)
    if data.val_mode == "aflw2000" and not has_boxes(builder):
        raise EvalError(
            f"{data.val_dir}: {dataset} records are face crops without a face box; evaluate them "
            "with val_mode 'biwi' (configs/eval_biwi.py)"
        )
    return {"dataset": dataset, "dataset_dir": str(builder.data_dir), "num_records": count}


def evaluate_network(
    model: HPENet, config: ml_collections.ConfigDict, *, total: int | None = None
) -> dict[str, float]:
    """``evaluate_batches`` of ``model`` (inference mode) over the validation split of
    ``config.data`` (``val_dir``, ``val_split``, ``val_mode``, ``image_size``,
    ``val_input_size``), in batches of ``config.eval_batch_size``, on this process's first
    device alone."""
    from hpe_jax.data.loaders import data_sharding, make_loader

    loader = make_loader(config, "val", data_sharding(jax.local_devices()[:1]))
    try:
        return evaluate_batches(
            make_predictor(model), loader, total=total, progress=config.progress
        )
    finally:
        loader.close()


def _load_for_eval(path: Path, variant: str) -> HPENet:
    try:
        return load_network(path, variant)
    except LOAD_ERRORS as err:
        message = short_message(err)
        if "variant" in message:
            message += "\n(the variant is set with --config.model.variant=s|m|l)"
        where = "" if str(path) in message else f" {path}"  # named once
        raise EvalError(f"cannot evaluate checkpoint{where}:\n  {message}") from err


def evaluate_and_report(
    config: ml_collections.ConfigDict, checkpoint: str | Path, output: str | Path | None = None
) -> dict[str, Any]:
    """Evaluates every checkpoint at ``checkpoint`` (``list_checkpoints``) on the validation split
    of ``config``, prints the table (and the best checkpoint of several), writes the JSON report
    (to ``output``, default ``report_path``) and returns it.

    The errors are plain ``|pred - gt|`` per angle, as the original's test script (whatever
    ``config.val_metric`` says, which is for validation during training).

    The report: ``data_dir`` (the dataset's version folder), ``split``, ``dataset``,
    ``val_mode``, ``image_size``, ``input_size``, ``variant``, ``angle_error`` (``plain``),
    ``checkpoints`` ({name: {yaw, pitch, roll, mean_mae, angle_error, maev, geodesic (degrees),
    num_images, path}}, in evaluation order), ``failed`` ({name: one-line error} of the
    checkpoints that could not be evaluated: unreadable, damaged (a digest mismatch, a
    non-finite weight), of another variant, or predicting NaN; also rows of the printed table)
    and ``best`` (the name with the lowest ``mean_mae``, None if none).

    Raises:
      EvalError: missing or unusable data; a single checkpoint that is unusable, of another
        variant or predicts NaN; in a sweep of several, after the table is printed and the
        report of the others written, naming the ones that failed (a UserError: the entry
        point exits with status 2 and that one line).
    """
    data = config.data
    meta = check_eval_data(config)
    try:
        found = list_checkpoints(checkpoint)
    except (OSError, ValueError) as err:
        raise EvalError(short_message(err)) from err
    num_batches = math.ceil(int(meta["num_records"]) / config.eval_batch_size)
    results: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for index, (name, path) in enumerate(found):
        if config.progress:
            print(f"[{index + 1}/{len(found)}] {path}", file=sys.stderr)
        try:
            metrics = evaluate_network(
                _load_for_eval(path, config.model.variant), config, total=num_batches
            )
            if not math.isfinite(metrics["mean_mae"]):
                raise EvalError(f"checkpoint {path} predicts NaN or Inf angles")
        except EvalError as err:
            if len(found) == 1:
                raise
            failed[name] = one_line(str(err))
            print(f"error: {failed[name]}", file=sys.stderr)
            continue
        results[name] = {**metrics, "path": str(path)}
    best = min(results, key=lambda n: results[n]["mean_mae"]) if results else None
    dataset = meta["dataset"]
    report = {
        "data_dir": meta["dataset_dir"],
        "split": data.val_split,
        "dataset": dataset,
        "val_mode": data.val_mode,
        "image_size": data.image_size,
        "input_size": data.val_input_size if data.val_mode == "biwi" else None,
        "variant": config.model.variant,
        "angle_error": "plain",
        "checkpoints": results,
        "failed": failed,
        "best": best,
    }
    print(format_table(results, failed))
    if best is not None and len(results) > 1:
        print(f"best: {best} (mean MAE {results[best]['mean_mae']:.3f} deg)")
    out = Path(output) if output else report_path(checkpoint, dataset, data.val_split)
    try:
        write_report(out, report)
    except OSError as err:
        raise EvalError(f"cannot write the report {out}: {err}") from err
    print(f"wrote {out}")
    if failed:
        raise EvalError(
            f"{len(failed)} of {len(found)} checkpoints could not be evaluated "
            f"({', '.join(failed)}; reasons in {out})"
        )
    return report
