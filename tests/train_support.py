"""Shared pieces of the training tests: the small standard run configuration, subprocess
commands and environments for ``train_main.py``, and flat views of states and checkpoints.

Every training test uses the same network, step shapes and optimiser (variant ``s``, 64x64
images, global batch 8, AdamW at 1e-3 with a 6-step cosine schedule and no warm-up), so one
compiled train step serves them all through JAX's persistent compilation cache
(``subprocess_env``; the cache directory is part of the cache key, so one per session).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DEFAULT_CONFIG = REPO / "configs" / "default.py"
SYNTHETIC_CONFIG = REPO / "configs" / "synthetic.py"

IMAGE_SIZE = 64  # the smallest size the FPAS takes: its deepest map is 1x1 at 64
BATCH_SIZE = 8
TOTAL_STEPS = 6  # every run's schedule length (the learning rate decays to 0 at step 6)
NUM_TRAIN = 32  # synthetic 300W-LP files (flip twins included): 4 steps per epoch at batch 8
NUM_TEST = 8
# Overrides of configs/default.py shared by every training test (flattened ConfigDict keys).
STANDARD = {
    "data.image_size": IMAGE_SIZE,
    "data.worker_count": 0,
    "batch_size": BATCH_SIZE,
    "eval_batch_size": BATCH_SIZE,
    "learning_rate": 1e-3,
    "lr_schedule": "cosine",
    "warmup_steps": 0,
    "max_steps": TOTAL_STEPS,
    "log_every_steps": 1,
    "progress": False,
}


def prepare_datasets(tmp_path_factory) -> SimpleNamespace:
    """Tiny synthetic sets as TFDS datasets (``NUM_TRAIN`` 300W-LP-format training heads,
    ``NUM_TEST`` AFLW2000-format test heads, 64 px): ``.train`` and ``.test`` version folders."""
    from data_prep.synthetic_data import prepare_synthetic_datasets

    train, test = prepare_synthetic_datasets(
        tmp_path_factory.mktemp("data"),
        num_train=NUM_TRAIN,
        num_test=NUM_TEST,
        image_size=IMAGE_SIZE,
        seed=0,
        progress=False,
    )
    return SimpleNamespace(train=train, test=test)


def session_cache_dir(tmp_path_factory) -> Path:
    """The pytest session's persistent compilation cache folder (one per session: its path is
    part of JAX's cache key)."""
    path = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
    path.mkdir(exist_ok=True)
    return path


def standard_config(train_dir: str | Path, **overrides: Any) -> ml_collections.ConfigDict:
    """``configs/default.py`` with ``STANDARD``, ``data.train_dir`` and ``overrides`` (flattened
    keys with ``__`` for dots, e.g. ``model__dropout=0.0``)."""
    if str(REPO) not in sys.path:  # configs/ is a folder at the repo root, not a package
        sys.path.insert(0, str(REPO))
    from configs import default

    config = default.get_config()
    config.update_from_flattened_dict(_flattened(train_dir, overrides))
    return config


def _flattened(train_dir: str | Path, overrides: dict[str, Any]) -> dict[str, Any]:
    values = {**STANDARD, "data.train_dir": str(train_dir)}
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return values


def train_main_command(
    workdir: Path, train_dir: str | Path, config_file: Path = DEFAULT_CONFIG, **overrides: Any
) -> list[str]:
    """``python train_main.py`` with ``standard_config``'s values as command-line overrides."""
    flags = [f"--config.{key}={value}" for key, value in _flattened(train_dir, overrides).items()]
    return [
        sys.executable,
        str(REPO / "train_main.py"),
        f"--config={config_file}",
        f"--workdir={workdir}",
        *flags,
    ]


def subprocess_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a training subprocess: CPU JAX, the repo and tests on the path, and
    the session's persistent compilation cache."""
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache_dir),
        PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")]),
        **extra,
    )
    return env


def run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Runs ``command`` in the repo root, capturing its output (text)."""
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Starts ``command`` in the repo root with stdout and stderr going to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(condition, process: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    """Polls ``condition()`` every 50 ms until it holds; fails if ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"the run ended (exit {process.returncode}) before {what}:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} after {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def flat(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """``{'a/b/c': array}`` for every leaf of a pytree (host copies)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        prefix + jax.tree_util.keystr(path, simple=True, separator="/"): np.asarray(leaf)
        for path, leaf in leaves
    }


def host_state(state: Any) -> dict[str, np.ndarray]:
    """The parameters and BN statistics of a ``TrainState`` as flat host arrays, keyed
    ``params/...`` and ``batch_stats/...``."""
    return {
        **flat(nnx.to_pure_dict(state.params), "params/"),
        **flat(nnx.to_pure_dict(state.batch_stats), "batch_stats/"),
    }


def saved_items(step_dir: Path, *items: str) -> dict[str, np.ndarray]:
    """The array items (e.g. ``model``, ``opt_state``) of a checkpoint step directory, flat,
    keyed ``<item>/...``, read onto this process's first device whatever mesh saved them."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    out: dict[str, np.ndarray] = {}
    with ocp.StandardCheckpointer() as ckptr:
        for item in items:
            stored = ckptr.metadata(step_dir / item).item_metadata
            target = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), stored
            )
            out.update(flat(ckptr.restore(step_dir / item, target), f"{item}/"))
    return out


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Per key max |a - b| (the key sets must agree)."""
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())[:10]
    return {k: float(np.max(np.abs(a[k] - b[k]), initial=0.0)) for k in a}


def assert_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Bitwise equality of two flat dicts of arrays, naming the differing keys."""
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())[:10]
    differ = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} arrays differ, e.g. {differ[:5]}"
