"""The input of a run: the grain pipelines of ``config.data`` as iterators of global batches.

``make_loader(config, "train" | "val", sharding)`` is the one place where a config becomes a
loader. Each JAX process loads only its own rows (``hpe_jax.data.pipeline``: the processes of
the sharding's mesh split every global batch) and ``GlobalBatches`` assembles them into
``jax.Array`` s sharded over the mesh's data axis with ``jax.make_array_from_process_local_data``,
as maxtext's grain iterator does. Batches are dicts of the pipeline's keys (``image``,
``coarse``, ``shift``, ``angles``, and ``mask`` for ``val``), leading axis the global batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import grain
import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from hpe_jax.data.pipeline import make_eval_loader, make_train_loader
from hpe_jax.data.source import check_trainable
from hpe_jax.errors import UserError

DATA_AXIS = "data"


def data_sharding(devices: list[jax.Device] | None = None) -> NamedSharding:
    """Batch sharding over a one-axis (``data``) mesh of ``devices`` (default: all)."""
    devices = jax.devices() if devices is None else devices
    mesh = jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )
    return NamedSharding(mesh, P(DATA_AXIS))


def process_share(sharding: NamedSharding) -> tuple[int, int]:
    """(this process's index among the processes of the sharding's mesh, their count)."""
    processes = sorted({d.process_index for d in sharding.mesh.devices.flat})
    if jax.process_index() not in processes:
        raise UserError(f"process {jax.process_index()} has no device in the mesh {processes}")
    return processes.index(jax.process_index()), len(processes)


class GlobalBatches(Iterator[dict[str, jax.Array]]):
    """Global batches from this process's grain iterator of local batches.

    Checkpointable as a grain ``DataLoader`` iterator is (``grain.checkpoint.CheckpointSave``
    / ``CheckpointRestore``, used by ``hpe_jax.checkpoint``): ``get_state`` gives the local
    iterator's position as JSON bytes, ``set_state`` moves it back there.
    """

    def __init__(self, local: grain.DatasetIterator, sharding: NamedSharding):
        self.local = local
        self.sharding = sharding

    def __next__(self) -> dict[str, jax.Array]:
        batch = next(self.local)
        return {
            key: jax.make_array_from_process_local_data(self.sharding, np.asarray(value))
            for key, value in batch.items()
        }

    def get_state(self) -> bytes:
        """The local iterator's position, JSON bytes."""
        return json.dumps(self.local.get_state()).encode()

    def set_state(self, state: bytes) -> None:
        """Moves the local iterator to a position from ``get_state``: the next batches are the
        ones the saved iterator would have produced."""
        decoded: Any = json.loads(state.decode())
        self.local.set_state(decoded)

    def start_prefetch(self) -> None:
        """Starts the workers of the local iterator ahead of the first ``next``."""
        self.local.start_prefetch()

    def close(self) -> None:
        """Stops the local iterator's workers and threads."""
        self.local.close()


def _per_process(global_batch: int, shard_count: int, key: str) -> int:
    if global_batch % shard_count:
        raise UserError(f"{key} {global_batch} must be a multiple of the process count")
    return global_batch // shard_count


def make_loader(
    config: ml_collections.ConfigDict,
    split: Literal["train", "val"],
    sharding: NamedSharding,
    *,
    num_epochs: int | None = None,
) -> GlobalBatches:
    """Global batches of a run's training or validation data, sharded by ``sharding``.

    ``train``: ``config.data.train_dir`` / ``train_split``, global batch ``config.batch_size``,
    shuffled with ``config.seed``, augmented (``augment``, ``flip``) at ``image_size``, endless
    unless ``num_epochs``, in ``worker_count`` worker processes. ``val``: ``val_dir`` /
    ``val_split``, global batch ``config.eval_batch_size``, every record once with ``mask``
    (``val_mode``, ``val_input_size``), in this process. Both with ``num_threads`` threads.

    The processes owning devices of ``sharding``'s mesh each load their share; a mesh of this
    process's devices makes this process load everything. A training split recorded to hold
    poses the angle bins cannot label is refused first (``source.check_trainable``).
    """
    data = config.data
    shard_index, shard_count = process_share(sharding)
    if split == "train":
        check_trainable(data.train_dir, data.train_split)
        local = make_train_loader(
            data.train_dir,
            data.train_split,
            batch_size=_per_process(config.batch_size, shard_count, "batch_size"),
            target_size=data.image_size,
            augment=data.augment,
            flip=data.flip,
            seed=config.seed,
            worker_count=data.worker_count,
            num_threads=data.num_threads,
            num_epochs=num_epochs,
            shard_index=shard_index,
            shard_count=shard_count,
        )
    elif split == "val":
        local = make_eval_loader(
            data.val_dir,
            data.val_split,
            batch_size=_per_process(config.eval_batch_size, shard_count, "eval_batch_size"),
            mode=data.val_mode,
            target_size=data.image_size,
            input_size=data.val_input_size,
            worker_count=0,
            num_threads=data.num_threads,
            shard_index=shard_index,
            shard_count=shard_count,
        )
    else:
        raise UserError(f"split must be 'train' or 'val', got {split!r}")
    return GlobalBatches(iter(local), sharding)
