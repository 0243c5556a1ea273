"""Evaluation: angle errors of a network over an evaluation loader, and their report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from hpe_jax.pose import geodesic, mae, maev, rotation_from_euler

METRIC_NAMES = ("yaw", "pitch", "roll", "mean_mae", "maev", "geodesic")


def evaluate_batches(
    predict: Callable[[np.ndarray], np.ndarray],
    batches: Iterable[dict[str, np.ndarray]],
    *,
    total: int | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Errors of ``predict`` over the batches of an evaluation loader (every JAX process calls it
    with its own shard; the sums are gathered over processes).

    Args:
      predict: (B, S, S, 3) normalised images -> (B, 3) degrees (yaw, pitch, roll).
      batches: dicts with ``image``, ``angles`` (B, 3) degrees and ``mask`` (B,) (False on padding).
    Returns:
      ``yaw``, ``pitch``, ``roll`` (MAE, plain |pred - gt|, degrees), ``mean_mae`` (their mean),
      ``maev`` (mean axis-vector error, rows of the rotation matrices, degrees), ``geodesic``
      (mean geodesic error, degrees), ``num_images``.
    """
    sums = np.zeros(6, np.float64)  # |yaw|, |pitch|, |roll|, maev, geodesic, count
    bar = tqdm(batches, total=total, desc="eval", unit="batch", disable=not progress)
    for batch in bar:
        mask = np.asarray(batch["mask"], bool)
        pred = np.asarray(predict(batch["image"]), np.float64)[mask]
        gt = np.asarray(batch["angles"], np.float64)[mask]
        r_pred, r_gt = rotation_from_euler(pred), rotation_from_euler(gt)
        sums[:3] += mae(pred, gt).sum(axis=0)
        sums[3] += maev(r_pred, r_gt).sum()
        sums[4] += geodesic(r_pred, r_gt).sum()
        sums[5] += mask.sum()
    if jax.process_count() > 1:
        sums = np.asarray(multihost_utils.process_allgather(sums)).sum(axis=0)
    count = sums[5]
    if count == 0:
        raise ValueError("the evaluation data holds no images")
    per_angle = sums[:3] / count
    return {
        "yaw": float(per_angle[0]),
        "pitch": float(per_angle[1]),
        "roll": float(per_angle[2]),
        "mean_mae": float(per_angle.mean()),
        "maev": float(sums[3] / count),
        "geodesic": float(sums[4] / count),
        "num_images": int(count),
    }


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A fixed-width table, one row per evaluated checkpoint, errors in degrees."""
    header = f"{'checkpoint':<24}" + "".join(f"{n:>10}" for n in METRIC_NAMES) + f"{'images':>8}"
    lines = [header, "-" * len(header)]
    for name, m in rows.items():
        values = "".join(f"{m[n]:>10.3f}" for n in METRIC_NAMES)
        lines.append(f"{name:<24}{values}{m['num_images']:>8d}")
    return "\n".join(lines)


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    """Writes ``report`` as indented JSON at ``path``."""
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def evaluate_checkpoint(
    path: str | Path,
    data_dir: str | Path,
    split: str,
    *,
    mode: str,
    image_size: int,
    input_size: int | None = None,
    batch_size: int = 64,
    variant: str | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Loads the network at ``path`` (orbax checkpoint step dir, a directory of steps (newest),
    or an original PyTorch checkpoint file) and evaluates it on the ``split`` shards of
    ``data_dir`` with the evaluation transforms of ``mode`` ('aflw2000' or 'biwi')."""
    from flax import nnx

    from hpe_jax.checkpoint import load_model
    from hpe_jax.data.pipeline import make_eval_loader
    from hpe_jax.pose import decode_angles

    if Path(path).is_file():
        from hpe_jax.convert_torch import convert_checkpoint

        model = convert_checkpoint(path, variant or "s")
    else:
        model = load_model(path, variant=variant)
    forward = nnx.jit(lambda m, x: decode_angles(m(x)))
    loader = make_eval_loader(
        data_dir,
        split,
        batch_size=batch_size,
        mode=mode,
        target_size=image_size,
        input_size=input_size,
        worker_count=0,
        shard_index=0,
        shard_count=1,
    )
    return evaluate_batches(
        lambda images: np.asarray(forward(model, images)), loader, progress=progress
    )
