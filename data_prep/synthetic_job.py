"""The README's main job on synthetic heads: the data generated and converted under the workdir,
training, then the evaluation table and the mean-pose baseline.

``train_main.py`` runs it when ``config.data.synthetic`` is set (``configs/synthetic.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from data_prep.reader import read_records
from data_prep.synthetic_data import prepare_synthetic_datasets
from hpe_jax.config_check import check_device_split
from hpe_jax.evaluate import evaluate_network, format_table, load_network, write_report
from hpe_jax.pose import mae
from hpe_jax.train import train_and_evaluate, workdir_lock


def prepare_data(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Generates and converts the synthetic sets under ``workdir/data`` (once) and points
    ``config.data.train_dir`` / ``val_dir`` at them."""
    syn = config.data.synthetic
    train_dir, test_dir = prepare_synthetic_datasets(
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
    return np.stack([r["pose"] for r in read_records(data_dir, split, with_image=False)])


def mean_pose_baseline(config: ml_collections.ConfigDict) -> float:
    """Mean MAE (degrees) on the validation set of always predicting the training set's mean
    pose."""
    data = config.data
    mean_pose = _poses(data.train_dir, data.train_split).mean(axis=0)
    test = _poses(data.val_dir, data.val_split)
    return float(mae(np.broadcast_to(mean_pose, test.shape), test).mean())


def report(config: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
    """Evaluates the best checkpoint of the run, prints the table and, last, the line
    ``mean MAE X deg; mean-pose baseline Y deg``; writes ``workdir/eval_synthetic.json``."""
    best = workdir / "best"
    path = best if any(best.iterdir()) else workdir / "checkpoints"
    metrics = evaluate_network(load_network(path, config.model.variant), config)
    baseline = mean_pose_baseline(config)
    write_report(
        workdir / "eval_synthetic.json",
        {"checkpoint": str(path), **metrics, "mean_pose_baseline": baseline},
    )
    print(format_table({path.name: metrics}))
    print(f"mean MAE {metrics['mean_mae']:.1f} deg; mean-pose baseline {baseline:.1f} deg")
    return metrics


def run_synthetic_job(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Prepares the synthetic data under ``workdir/data``, trains with ``config`` and reports
    (``report``); returns the evaluation metrics of the best checkpoint (degrees). The batch
    sizes are checked against the devices before any data is made, and the workdir's lock
    (``workdir_lock``) is held from the data to the report."""
    check_device_split(config)
    workdir = Path(workdir)
    with workdir_lock(workdir):
        with config.unlocked():
            prepare_data(config, workdir)
        train_and_evaluate(config, workdir, locked=True)
        return report(config, workdir)
