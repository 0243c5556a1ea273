"""Training logs: one JSON line per record in ``workdir/metrics.jsonl`` and TensorBoard scalars
(tensorboardX, no TensorFlow). Only JAX process 0 writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
from tensorboardX import SummaryWriter


class MetricsWriter:
    """Appends ``{"kind", "step", ...}`` JSON lines and the same scalars to TensorBoard."""

    def __init__(self, workdir: str | Path):
        self.enabled = jax.process_index() == 0
        if self.enabled:
            workdir = Path(workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            self._jsonl = (workdir / "metrics.jsonl").open("a")
            self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Logs ``values`` (numbers) of ``kind`` ('train' or 'val') at ``step``."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        self._jsonl.flush()
        for name, value in values.items():
            if isinstance(value, int | float):
                self._tb.add_scalar(f"{kind}/{name}", value, step)
        self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
