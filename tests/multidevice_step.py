"""One train step of ``train_support.standard_config`` on every JAX device of this process.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multidevice_step.py \
        TRAIN_DIR WORKDIR BATCH.npz OUT.npz

Reads the global batch from BATCH.npz and writes to OUT.npz the state before (``before/...``) and
after (``after/...``) the step (see ``train_support.host_state``), the step's ``loss``, the device
count and the per-device row counts of the sharded batch. ``tests/test_train.py`` runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
from train_support import host_state, standard_config

from hpe_jax.train import Trainer


def main(train_dir: str, workdir: str, batch_path: str, out_path: str) -> None:
    trainer = Trainer(standard_config(train_dir), Path(workdir))
    before = host_state(trainer.state)
    with np.load(batch_path) as stored:
        batch = jax.device_put({k: stored[k] for k in stored.files}, trainer.batch_sharding)
    trainer.state, metrics = trainer.step_fn(trainer.state, batch, trainer.rest)
    after = host_state(trainer.state)
    np.savez(
        out_path,
        **{f"before/{k}": v for k, v in before.items()},
        **{f"after/{k}": v for k, v in after.items()},
        loss=np.asarray(metrics["loss"]),
        num_devices=np.asarray(trainer.mesh.devices.size),
        shard_rows=np.asarray([s.data.shape[0] for s in batch["image"].addressable_shards]),
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
