"""No TensorFlow: it is not installed, and converting, reading and loading a dataset (TFDS
without TensorFlow) never imports it. Training, evaluation and resuming on TFDS datasets are
tested in test_train.py and test_eval.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DATA_PATH = """
import sys
from pathlib import Path

from data_prep import read_records
from data_prep.convert import convert
from data_prep.synthetic import generate
from hpe_jax.data.pipeline import make_eval_loader, make_train_loader

root = Path(sys.argv[1])
generate("aflw2000", 4, root / "raw", seed=0, image_size=64)
convert("aflw2000", root / "raw", root / "out", split="test", progress=False)
assert len(list(read_records(root / "out", "test"))) == 4
common = dict(batch_size=2, target_size=32, shard_index=0, shard_count=1)
train = make_train_loader(root / "out", "test", augment=1.0, flip=True, seed=0, worker_count=0,
                          **common)
assert next(iter(train))["image"].shape == (2, 32, 32, 3)
assert len(list(make_eval_loader(root / "out", "test", mode="aflw2000", **common))) == 2
loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
print("tensorflow modules:", loaded)
"""


def test_tensorflow_is_not_installed():
    assert importlib.util.find_spec("tensorflow") is None
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tensorflow")


def test_convert_read_and_load_never_import_tensorflow(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DATA_PATH), str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorflow modules: []" in proc.stdout
