"""The README's main job on synthetic heads: data preparation before training, and the final
report (evaluation table and the mean-pose baseline) after it."""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np

from hpe_jax.evaluate import evaluate_checkpoint, format_table, write_report
from hpe_jax.pose import mae


def prepare_data(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Generates and converts the synthetic sets under ``workdir/data`` (once) and points
    ``config.data.train_dir`` / ``val_dir`` at them."""
    from data_prep.synthetic_shards import prepare_synthetic_shards

    syn = config.data.synthetic
    train_dir, test_dir = prepare_synthetic_shards(
        workdir / "data",
        num_train=syn.num_train,
        num_test=syn.num_test,
        image_size=syn.image_size,
        seed=syn.seed,
        progress=config.progress,
    )
    config.data.train_dir = str(train_dir)
    config.data.val_dir = str(test_dir)


def _poses(data_dir: str, split: str) -> np.ndarray:
    from data_prep import read_records

    return np.stack([r["pose"] for r in read_records(data_dir, split, with_image=False)])


def mean_pose_baseline(config: ml_collections.ConfigDict) -> float:
    """Mean MAE (degrees) on the validation set of always predicting the training set's mean
    pose."""
    data = config.data
    mean_pose = _poses(data.train_dir, data.train_split).mean(axis=0)
    test = _poses(data.val_dir, data.val_split)
    return float(mae(np.broadcast_to(mean_pose, test.shape), test).mean())


def report(config: ml_collections.ConfigDict, workdir: Path) -> dict[str, float]:
    """Evaluates the best checkpoint of the run, prints the table and, last, the line
    ``mean MAE X deg; mean-pose baseline Y deg``; writes ``workdir/eval_synthetic.json``."""
    data = config.data
    best = workdir / "best"
    path = best if any(best.iterdir()) else workdir / "checkpoints"
    metrics = evaluate_checkpoint(
        path,
        data.val_dir,
        data.val_split,
        mode=data.val_mode,
        image_size=data.image_size,
        batch_size=config.eval_batch_size,
        progress=config.progress,
    )
    baseline = mean_pose_baseline(config)
    write_report(
        workdir / "eval_synthetic.json",
        {"checkpoint": str(path), **metrics, "mean_pose_baseline": baseline},
    )
    print(format_table({path.name: metrics}))
    print(f"mean MAE {metrics['mean_mae']:.1f} deg; mean-pose baseline {baseline:.1f} deg")
    return metrics
