"""Evaluation: angle errors of a network over an evaluation loader, and their report."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from hpe_jax.pose import geodesic, mae, maev, rotation_from_euler

if TYPE_CHECKING:
    from hpe_jax.models import HPENet

METRIC_NAMES = ("yaw", "pitch", "roll", "mean_mae", "maev", "geodesic")
# Files of the original's checkpoints (torch.save): ``<epoch>.pkl`` in its snapshot folders.
TORCH_SUFFIXES = (".pkl", ".pth", ".pt")
# Where a training workdir keeps its checkpoints (hpe_jax.train): every saved step, the best one.
WORKDIR_SUBDIRS = ("checkpoints", "best")


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
            raise ValueError(
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


def make_predictor(model: HPENet) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` for ``evaluate_batches``: (B, S, S, 3) normalised images -> (B, 3) degrees
    (yaw, pitch, roll) with ``model`` (in inference mode). One compiled function serves every
    network of the same structure and batch shape, so a sweep over checkpoints compiles once."""
    from flax import nnx

    graphdef, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    predict = _jitted_predict()
    return lambda images: np.asarray(predict(params, batch_stats, rest, images, graphdef=graphdef))


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
    from hpe_jax.data.pipeline import make_eval_loader

    model = load_network(path, variant)
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
    return evaluate_batches(make_predictor(model), loader, progress=progress)
