"""Process start-up shared by the entry scripts: the multi-process JAX runtime."""

from __future__ import annotations

import jax
import ml_collections


def start_process(distributed: ml_collections.ConfigDict) -> None:
    """Joins the multi-process JAX runtime when ``distributed.enabled`` (``config.distributed``).

    With ``coordinator_address`` empty, ``jax.distributed.initialize`` detects the cluster itself
    (TPU VMs, SLURM, ...); otherwise the address, ``num_processes`` and ``process_id`` are used.
    Must run before the first JAX computation. A no-op when not enabled.
    """
    if not distributed.enabled:
        return
    if distributed.coordinator_address:
        jax.distributed.initialize(
            coordinator_address=distributed.coordinator_address,
            num_processes=distributed.num_processes,
            process_id=distributed.process_id,
        )
    else:
        jax.distributed.initialize()
