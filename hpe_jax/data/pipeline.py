"""grain input pipelines: training (shuffled, repeated, augmented) and evaluation (exact, padded).

Both read a split of a TFDS dataset written by ``python -m data_prep`` through TFDS's
``ArrayRecordDataSource`` (``hpe_jax.data.source``: ``data_dir`` is the dataset's version
folder, its dataset folder or a data dir holding only it; local or a bucket path), decode the
images themselves (PIL, in the transform) and yield dicts of numpy arrays, per JAX process
(B: the process's batch size, S: ``target_size``); ``hpe_jax.data.loaders`` makes global arrays
of them:

| key      | dtype   | shape        | meaning                                                  |
|----------|---------|--------------|----------------------------------------------------------|
| image    | float32 | (B, S, S, 3) | NHWC RGB, ImageNet-normalised                            |
| coarse   | int32   | (B, 3)       | coarse bins 0..9 (``hpe_jax.pose.encode_bins``)          |
| shift    | int32   | (B, 3)       | shift bins 0..19                                         |
| angles   | float32 | (B, 3)       | degrees, (yaw, pitch, roll)                              |
| mask     | bool    | (B,)         | evaluation only: False on padding                        |

With two or more workers the arrays are grain ``SharedMemoryArray`` s (``np.ndarray`` subclasses
in shared memory, released when the batch is garbage-collected): hand them to JAX and drop them,
or copy (``np.array``) what must outlive the step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import grain
import jax
import numpy as np
from absl import flags
from PIL import Image

from hpe_jax.data import transforms
from hpe_jax.data.source import decode_image, record, split_source
from hpe_jax.errors import UserError
from hpe_jax.pose import encode_bins

EVAL_MODES = ("aflw2000", "biwi")


def _labels(angles: np.ndarray, name: str) -> dict[str, np.ndarray]:
    try:
        coarse, shift = encode_bins(angles)
    except ValueError as e:
        raise UserError(f"record {name!r}: pose {angles.tolist()} cannot be labelled: {e}") from e
    return {"coarse": coarse, "shift": shift, "angles": angles.astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class TrainTransform(grain.transforms.RandomMap):
    """Source element -> augmented training example (see ``hpe_jax.data.transforms``).

    A module-level class configured by its fields only, so grain's spawned workers unpickle it.

    Attributes:
      target_size: output side S, pixels.
      augment: probability of augmenting a record (a geometric op and a photometric step).
      flip: whether horizontal flips are among the geometric ops.

    Records with a face box are augmented as 300W-LP / DAD-3DHeads, records without one as BIWI
    face crops (no crop, no shift).
    """

    target_size: int
    augment: float
    flip: bool

    def random_map(
        self, element: dict[str, Any], rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        rec = record(element)
        params = transforms.sample_augment_params(
            rng,
            augment=self.augment,
            flip=self.flip,
            has_box=rec["box"] is not None,
            size=self.target_size,
        )
        image, angles = transforms.augment_example(
            decode_image(rec["image_bytes"]), rec["box"], rec["pose"], params, self.target_size
        )
        return {"image": image, **_labels(angles, rec["name"])}


@dataclasses.dataclass(frozen=True)
class EvalTransform(grain.transforms.Map):
    """Source element (or ``{}``, padding) -> deterministic evaluation example with ``mask``.

    Attributes:
      mode: ``aflw2000`` (loose crop with k = 0.2, resize to S) or ``biwi`` (resize to the
        square ``input_size``, centre crop S).
      target_size: output side S, pixels.
      input_size: ``biwi`` resize size.
    """

    mode: str
    target_size: int
    input_size: int

    def map(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
        s = self.target_size
        if not element:
            return {
                "image": np.zeros((s, s, 3), np.float32),
                "coarse": np.zeros(3, np.int32),
                "shift": np.zeros(3, np.int32),
                "angles": np.zeros(3, np.float32),
                "mask": np.array(False),
            }
        rec = record(element)
        pil = Image.fromarray(decode_image(rec["image_bytes"]))
        if self.mode == "aflw2000":
            if rec["box"] is None:
                raise UserError(
                    f"record {rec['name']!r} has no face box, which eval mode 'aflw2000' crops "
                    "with; use mode 'biwi' for face-crop datasets"
                )
            out = transforms.crop_resize(
                pil, transforms.loose_box(rec["box"], transforms.EVAL_K), s
            )
        else:
            out = transforms.resize_center_crop(pil, self.input_size, s)
        labels = _labels(rec["pose"], rec["name"])
        return {"image": transforms.normalize(out), **labels, "mask": np.array(True)}


def _shard_args(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    if (shard_index is None) != (shard_count is None):
        raise UserError("give both shard_index and shard_count, or neither")
    if shard_index is None:
        return jax.process_index(), jax.process_count()
    if not 0 <= shard_index < shard_count:
        raise UserError(f"shard_index must be in [0, {shard_count}), got {shard_index}")
    return shard_index, shard_count


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise UserError(f"{key} must be >= 1, got {value}")


def _iterate_batches(
    batches: grain.MapDataset, *, worker_count: int, num_threads: int
) -> grain.IterDataset:
    """An ``IterDataset`` over a ``MapDataset`` of batches: ``num_threads`` threads build
    batches ahead, in ``worker_count`` worker processes when > 0."""
    if worker_count < 0 or num_threads < 0:
        raise UserError(
            f"worker_count and num_threads must be >= 0, got {worker_count}, {num_threads}"
        )
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2, num_threads))
    it = batches.to_iter_dataset(read)
    if worker_count:
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it


def make_train_loader(
    data_dir: str | os.PathLike[str],
    split: str,
    *,
    batch_size: int,
    target_size: int,
    augment: float,
    flip: bool,
    seed: int,
    worker_count: int,
    num_threads: int = 2,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> grain.IterDataset:
    """The training pipeline of one JAX process; iterate it to get batches (module docstring).

    The records are shuffled globally with ``seed`` (a new permutation each epoch), repeated,
    each augmented with a generator keyed by ``(seed, its global stream position)``, and cut
    into per-process batches: global batch ``k`` is the ``shard_count`` consecutive
    per-process batches from ``k * shard_count``, and this process takes the ``shard_index``-th.
    So the global array that ``jax.make_array_from_process_local_data`` builds is, row for row,
    the batch of a single process with the same global batch size: the stream depends only on
    ``seed`` and the global batch size (not on the number of processes or ``worker_count``;
    workers produce whole batches) and is deterministic given them.

    Args:
      data_dir: the TFDS dataset (module docstring).
      split: split name (e.g. ``train``).
      batch_size: batch size of THIS process.
      target_size: image side S, pixels.
      augment: probability in [0, 1] of augmenting a record.
      flip: whether horizontal flips are among the augmentations.
      seed: shuffle and augmentation seed, in [0, 2**32).
      worker_count: grain worker processes (0: everything in this process). Workers are
        started with ``spawn``: a script that builds a loader with workers must guard its entry
        point with ``if __name__ == "__main__":``. grain reads its absl flags when it starts
        workers, so when the program has not parsed them (no ``absl.app.run``) they are marked
        as parsed, with their defaults.
      num_threads: threads per process reading, decoding and augmenting records.
      num_epochs: passes over the data, None for an endless stream. With a finite count the
        batches are cut to a multiple of ``shard_count`` so every process gets as many.
      shard_index, shard_count: this process's share; default ``jax.process_index()`` and
        ``jax.process_count()``.

    Returns:
      A ``grain.IterDataset``; ``iter()`` it for a checkpointable iterator (``loader_state``).
      Only full batches are produced.
    """
    _check_positive(batch_size=batch_size, target_size=target_size)
    if num_epochs is not None:
        _check_positive(num_epochs=num_epochs)
    shard_index, shard_count = _shard_args(shard_index, shard_count)
    source = split_source(data_dir, split)
    batches = (
        grain.MapDataset.source(source)
        .shuffle(seed=seed)
        .repeat(num_epochs)
        .random_map(TrainTransform(target_size, augment, flip), seed=seed)
        .batch(batch_size, drop_remainder=True)
    )
    if num_epochs is not None:
        batches = batches[: len(batches) // shard_count * shard_count]
    return _iterate_batches(
        batches[shard_index::shard_count], worker_count=worker_count, num_threads=num_threads
    )


def make_eval_loader(
    data_dir: str | os.PathLike[str],
    split: str,
    *,
    batch_size: int,
    mode: str,
    target_size: int,
    input_size: int | None = None,
    worker_count: int = 0,
    num_threads: int = 2,
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> grain.IterDataset:
    """The evaluation pipeline of one JAX process: every record exactly once, in file order.

    Records are dealt out to the processes (record ``i`` to process ``i % shard_count``) after
    padding the list to a multiple of ``shard_count``, so every process yields the same number
    of batches. Partial batches are padded to ``batch_size``; ``mask`` is False on padding, so
    summing over ``mask`` counts every record once across processes.

    Args:
      data_dir: the TFDS dataset (module docstring).
      split: split name (e.g. ``test``).
      batch_size: batch size of THIS process.
      mode: ``aflw2000`` (crop with k = 0.2, resize to ``target_size``) or ``biwi`` (resize
        to the square ``input_size``, centre crop ``target_size``).
      target_size: image side S, pixels.
      input_size: ``biwi`` resize size; default ``target_size`` (resize only).
      worker_count: grain worker processes (0: everything in this process); see
        ``make_train_loader``.
      num_threads: threads per process reading and decoding records.
      shard_index, shard_count: this process's share; default ``jax.process_index()`` and
        ``jax.process_count()``.

    Returns:
      A ``grain.IterDataset`` of batches with the keys of the module docstring plus ``mask``.
    """
    if mode not in EVAL_MODES:
        raise UserError(f"mode must be one of {EVAL_MODES}, got {mode!r}")
    _check_positive(batch_size=batch_size, target_size=target_size)
    input_size = target_size if input_size is None else input_size
    if mode == "biwi" and input_size < target_size:
        raise UserError(f"input_size {input_size} must be >= target_size {target_size}")
    shard_index, shard_count = _shard_args(shard_index, shard_count)
    source = split_source(data_dir, split)
    ds = grain.MapDataset.source(source)
    num_padding = math.ceil(len(source) / shard_count) * shard_count - len(source)
    if num_padding:
        ds = grain.MapDataset.concatenate([ds, grain.MapDataset.source([{}] * num_padding)])
    batches = (
        ds[shard_index::shard_count]
        .map(EvalTransform(mode, target_size, input_size))
        .batch(
            batch_size,
            batch_fn=functools.partial(grain.experimental.batch_and_pad, batch_size=batch_size),
        )
    )
    return _iterate_batches(batches, worker_count=worker_count, num_threads=num_threads)
