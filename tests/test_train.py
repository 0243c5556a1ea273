"""Proof tests of the training loop (hpe_jax/train.py, train_state.py, train_main.py).

One network, step shape and optimiser for all (``train_support.STANDARD``: variant s, 64x64,
batch 8, 6-step cosine schedule): the first test that trains compiles the step into a persistent
compilation cache shared with this process and every later subprocess, so the module compiles it
once (plus once on 4 devices). The tests marked ``slow`` run ``train_main.py`` (or a helper) in
subprocesses as a user would, about a minute each on two CPU cores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache
from train_support import (
    BATCH_SIZE,
    STANDARD,
    SYNTHETIC_CONFIG,
    TESTS,
    TOTAL_STEPS,
    assert_identical,
    host_state,
    max_abs_diff,
    prepare_datasets,
    run,
    saved_items,
    session_cache_dir,
    standard_config,
    start,
    subprocess_env,
    train_main_command,
    wait_for,
)

from hpe_jax import train
from hpe_jax.checkpoint import (
    MODEL_VARIABLES,
    load_model,
    read_meta,
    save_model,
    save_train_state,
)
from hpe_jax.compiler_options import compiler_options, ynnpack_convolutions
from hpe_jax.convert_torch import torch_entries
from hpe_jax.data.loaders import GlobalBatches, data_sharding, make_loader
from hpe_jax.inference import checkpoint_input_size
from hpe_jax.models import HPENet, get_config
from hpe_jax.train import Trainer, load_initial_weights

TIMEOUT = 600  # seconds per subprocess: a hang fails instead of blocking CI


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> SimpleNamespace:
    return prepare_datasets(tmp_path_factory)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Iterator[Path]:
    """The session's persistent compilation cache, used by this process while this module runs
    (restored afterwards) and by every training subprocess."""
    path = session_cache_dir(tmp_path_factory)
    previous = jax.config.values["jax_compilation_cache_dir"]
    compilation_cache.set_cache_dir(str(path))
    compilation_cache.reset_cache()
    yield path
    compilation_cache.set_cache_dir(previous)
    compilation_cache.reset_cache()


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """``train_and_evaluate`` installs SIGTERM / SIGINT handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _first_batches(config, count: int) -> list[dict[str, np.ndarray]]:
    """The first ``count`` batches ``train_and_evaluate`` feeds with ``config`` (one process),
    as host arrays."""
    iterator = make_loader(config, "train", data_sharding())
    batches = [{k: np.array(v) for k, v in next(iterator).items()} for _ in range(count)]
    iterator.close()
    return batches


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _jax_compile_log() -> Iterator[list[str]]:
    """The messages ``jax.log_compiles`` emits inside the block (tracing, lowering, compiling,
    persistent-cache hits)."""
    handler = _Records()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield handler.messages
    finally:
        logger.removeHandler(handler)


# ---------------------------------------------------------------------------------------------
# In-process: transfer, recompilation, one step on one device.


def _torch_checkpoint(path: Path) -> dict:
    """Writes a checkpoint of the original's format (``{'epoch', 'model'}``) of a randomly
    initialised reference network with non-trivial BN statistics; returns its state_dict."""
    torch = pytest.importorskip("torch")
    from hpe_jax.testing.torch_reference import (
        build_reference_model,
        original_init_,
        randomize_bn_stats_,
    )

    generator = torch.Generator().manual_seed(0)
    network = randomize_bn_stats_(original_init_(build_reference_model("s"), generator), generator)
    state_dict = network.state_dict()
    torch.save({"epoch": 1, "model": state_dict}, path)
    return state_dict


def test_transfer_from_torch_checkpoint_starts_from_its_weights(datasets, tmp_path):
    path = tmp_path / "epoch_1.pkl"
    state_dict = _torch_checkpoint(path)
    trainer = Trainer(standard_config(datasets.train, init_from=str(path)), tmp_path / "work")
    got = host_state(trainer.state)
    # Every variable, through the converter's layout transforms...
    model = nnx.merge(
        trainer.eval_def, trainer.state.params, trainer.state.batch_stats, trainer.rest
    )
    entries = torch_entries(model)
    assert len(entries) == len(got)
    for key, variable, transform in entries:
        np.testing.assert_array_equal(
            np.asarray(variable[...]), transform(state_dict[key].numpy()), err_msg=key
        )
    # ...and two written out by hand: a dense kernel is the transposed torch weight, and the
    # stem's BN statistics are the torch running mean / variance.
    np.testing.assert_array_equal(
        got["params/fc_yaw_coarse/kernel"], state_dict["fc_yaw_coarse.weight"].numpy().T
    )
    np.testing.assert_array_equal(
        got["batch_stats/backbone/stem/bn/mean"], state_dict["stem.1.running_mean"].numpy()
    )
    np.testing.assert_array_equal(
        got["batch_stats/backbone/stem/bn/var"], state_dict["stem.1.running_var"].numpy()
    )
    assert int(trainer.state.step) == 0  # weights only: a new optimiser
    assert trainer.manager.latest_step() is None


def test_init_from_checkpoint_of_another_variant_is_a_clear_error(tmp_path):
    # A real orbax checkpoint of the 'm' network (all-zero weights: only shapes and meta matter).
    other = nnx.eval_shape(lambda: HPENet(get_config("m"), rngs=nnx.Rngs(0)))
    zeros = jax.tree.map(lambda v: np.zeros(v.shape, v.dtype), nnx.state(other, MODEL_VARIABLES))
    nnx.update(other, zeros)
    path = save_model(tmp_path / "checkpoints" / "7", other, get_config("m"))
    model = nnx.eval_shape(lambda: HPENet(get_config("s"), rngs=nnx.Rngs(0)))
    for init_from in (path, path.parent):  # a step directory, or a directory of steps
        with pytest.raises(ValueError, match=r"holds variant 'm', the config asks for 's'"):
            load_initial_weights(model, str(init_from))


def test_best_validation_mae_survives_a_restart(datasets, tmp_path):
    """A resumed run compares new validations with the best MAE of the workdir, not with inf
    (which would replace a better checkpoint by the first validation after the restart)."""
    config = standard_config(datasets.train)
    trainer = Trainer(config, tmp_path)
    assert trainer.best_mean_mae() == float("inf")
    save_train_state(
        trainer.best_manager,
        trainer.state,
        config.model,
        extra_meta={"val": {"mean_mae": 4.25, "yaw_mae": 3.0}},
    )
    trainer.best_manager.wait_until_finished()
    assert Trainer(config, tmp_path).best_mean_mae() == 4.25
    # Measured with another angle error: not comparable, the next validation becomes the best.
    config.val_metric = "wrapped"
    assert Trainer(config, tmp_path).best_mean_mae() == float("inf")


def test_validation_uses_and_names_the_configured_angle_error(datasets, tmp_path):
    config = standard_config(datasets.train, data__val_dir=str(datasets.test), val_metric="wrapped")
    trainer = Trainer(config, tmp_path)
    wrapped = trainer.validate()
    config.val_metric = "plain"
    plain = trainer.validate()
    assert (wrapped["angle_error"], plain["angle_error"]) == ("wrapped", "plain")
    for angle in ("yaw", "pitch", "roll"):
        assert wrapped[angle] <= plain[angle]
    assert wrapped["maev"] == plain["maev"] and wrapped["num_images"] == plain["num_images"]


@pytest.fixture(scope="module")
def four_steps(datasets, cache_dir, tmp_path_factory) -> SimpleNamespace:
    """Four steps of a Trainer on this process's one device, with the compile log of each, and
    the compiled step's HLO text."""
    config = standard_config(datasets.train)
    trainer = Trainer(config, tmp_path_factory.mktemp("four_steps"))
    batches = _first_batches(config, 4)
    before = host_state(trainer.state)
    logs, losses = [], []
    for i, batch in enumerate(batches):
        with _jax_compile_log() as log:
            trainer.state, metrics = trainer.step_fn(
                trainer.state, jax.device_put(batch, trainer.batch_sharding), trainer.rest
            )
            losses.append(float(metrics["loss"]))
        logs.append([m for m in log if "train_step" in m])
        if i == 0:
            after_first = host_state(trainer.state)
    first = jax.device_put(batches[0], trainer.batch_sharding)
    compiled = trainer.step_fn.lower(trainer.state, first, trainer.rest)
    return SimpleNamespace(
        compiled_hlo=compiled.compile().as_text(),
        step_fn=trainer.step_fn,
        batches=batches,
        before=before,
        after_first=after_first,
        losses=losses,
        logs=logs,
    )


def test_no_recompilation_after_the_first_step(four_steps):
    assert any(m.startswith("Compiling jit(train_step)") for m in four_steps.logs[0])
    # Steps 2-4: not traced, lowered, compiled or fetched from the cache again.
    assert four_steps.logs[1:] == [[], [], []]
    assert np.isfinite(four_steps.losses).all()


def test_train_step_is_compiled_with_the_library_options(four_steps):
    """On CPU its convolutions (forward and gradients) run outside YNNPACK."""
    if compiler_options() is None:
        pytest.skip(f"not the CPU backend, or this jaxlib ({jax.__version__}) lacks the option")
    assert " convolution(" in four_steps.compiled_hlo
    assert ynnpack_convolutions(four_steps.compiled_hlo) == []


# One step on 4 devices against 1 device, float32 (measured: BN statistics differ by at most
# 8e-6, the loss by 3e-7 relative; 99.98% of the parameters by less than 1e-7).
# BN statistics: means / variances of the global batch, summed per shard then all-reduced.
BN_TOL = 2e-5  # absolute and relative
# Parameters: the first AdamW update is lr * g / (|g| + eps), about lr * sign(g); an entry whose
# gradient is at rounding level (here about 700 of 8.0M) may get the other sign from another
# reduction order and move by up to 2 lr.
PARAM_ATOL = 1e-6
MAX_MOVED_FRACTION = 5e-4
LR = STANDARD["learning_rate"]


@pytest.mark.slow
def test_four_devices_match_one_device(four_steps, datasets, cache_dir, tmp_path):
    np.savez(tmp_path / "batch.npz", **four_steps.batches[0])
    result = run(
        [
            sys.executable,
            str(TESTS / "multidevice_step.py"),
            str(datasets.train),
            str(tmp_path / "work"),
            str(tmp_path / "batch.npz"),
            str(tmp_path / "out.npz"),
        ],
        subprocess_env(cache_dir, XLA_FLAGS="--xla_force_host_platform_device_count=4"),
        TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    with np.load(tmp_path / "out.npz") as out:
        four = {k: out[k] for k in out.files}
    assert int(four["num_devices"]) == 4
    assert four["shard_rows"].tolist() == [2, 2, 2, 2]  # the batch of 8 really is split
    before = {k.removeprefix("before/"): v for k, v in four.items() if k.startswith("before/")}
    after = {k.removeprefix("after/"): v for k, v in four.items() if k.startswith("after/")}
    assert_identical(before, four_steps.before)  # the same seed gives the same start
    one = four_steps.after_first
    assert after.keys() == one.keys()
    np.testing.assert_allclose(float(four["loss"]), four_steps.losses[0], rtol=1e-5)
    stats = [k for k in one if k.startswith("batch_stats/")]
    for k in stats:
        np.testing.assert_allclose(after[k], one[k], atol=BN_TOL, rtol=BN_TOL, err_msg=k)
    params = [k for k in one if k.startswith("params/")]
    moved = {k: np.abs(after[k] - one[k]) for k in params}
    total = sum(d.size for d in moved.values())
    flipped = sum(int((d > PARAM_ATOL).sum()) for d in moved.values())
    assert flipped <= MAX_MOVED_FRACTION * total, (flipped, total)
    assert max(float(d.max()) for d in moved.values()) <= 2 * LR * 1.001
    print(
        "4 vs 1 device: max |BN diff|",
        max(max_abs_diff({k: after[k] for k in stats}, {k: one[k] for k in stats}).values()),
        "max |param diff|",
        max(float(d.max()) for d in moved.values()),
        f"entries > {PARAM_ATOL}: {flipped} of {total}",
    )


# ---------------------------------------------------------------------------------------------
# Subprocess runs of train_main.py.


def _committed_steps(workdir: Path) -> list[int]:
    """The steps saved completely: on a local disk orbax writes a step under a temporary name
    and renames it to the step number when complete (orbax 0.12 also writes
    commit_success.txt into it first, 0.11 does not)."""
    ckpts = workdir / "checkpoints"
    names = [p.name for p in ckpts.iterdir()] if ckpts.is_dir() else []
    return sorted(int(name) for name in names if name.isdigit())


def _logged_train_steps(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    records = map(json.loads, path.read_text().splitlines())
    return [r for r in records if r["kind"] == "train"]


NAN_AT_STEP = 3  # the images of the third batch are NaN


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    datasets, four_steps, keep_signal_handlers, monkeypatch, tmp_path
):
    class ReusingTrainer(Trainer):
        """The real loop's Trainer with the compiled step of ``four_steps`` (same config), so
        this test compiles nothing."""

        def __init__(self, config, workdir):
            super().__init__(config, workdir)
            self.step_fn = four_steps.step_fn

    class PoisonedBatches(GlobalBatches):
        """The real loop's training batches, the images of batch ``NAN_AT_STEP`` NaN."""

        calls = 0

        def __next__(self):
            batch = super().__next__()
            self.calls += 1
            if self.calls == NAN_AT_STEP:
                nan = np.full(batch["image"].shape, np.nan, np.float32)
                batch = {**batch, "image": jax.device_put(nan, self.sharding)}
            return batch

    def poisoned_loader(config, split, sharding, **kwargs):
        loader = make_loader(config, split, sharding, **kwargs)
        return PoisonedBatches(loader.local, loader.sharding)

    monkeypatch.setattr(train, "Trainer", ReusingTrainer)
    monkeypatch.setattr(train, "make_loader", poisoned_loader)
    workdir = tmp_path / "work"
    config = standard_config(datasets.train, checkpoint_every_steps=2)
    with pytest.raises(
        FloatingPointError,
        match=rf"NaN or Inf at step {NAN_AT_STEP};.* the last checkpoint, step 2, is intact",
    ):
        train.train_and_evaluate(config, workdir)
    # Step 2's checkpoint was committed before the error left the loop (the process may exit
    # right away), and nothing after it was written.
    assert _committed_steps(workdir) == [2]
    assert [p.name for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name] == []
    model = load_model(workdir / "checkpoints")  # the newest step
    leaves = jax.tree.leaves(nnx.state(model, MODEL_VARIABLES))
    assert all(bool(jnp.isfinite(leaf).all()) for leaf in leaves)
    assert [r["step"] for r in _logged_train_steps(workdir)] == [1, 2]


@pytest.fixture(scope="module")
def interrupted_run(datasets, cache_dir, tmp_path_factory) -> SimpleNamespace:
    """An uninterrupted run checkpointing every step, and a run of the same config that is
    SIGKILLed after its step-2 checkpoint, then resumed and SIGTERMed after one more step."""
    root = tmp_path_factory.mktemp("interrupted")
    reference, workdir = root / "reference", root / "interrupted"
    env = subprocess_env(cache_dir)
    # Dropout and stochastic depth keep their default rates: their keys must be replayed.
    uninterrupted = start(
        train_main_command(
            reference, datasets.train, checkpoint_every_steps=1, keep_checkpoints=TOTAL_STEPS
        ),
        env,
        root / "reference.log",
    )
    command = train_main_command(workdir, datasets.train, checkpoint_every_steps=2)
    killed = start(command, env, root / "killed.log")
    wait_for(
        lambda: 2 in _committed_steps(workdir),
        killed,
        root / "killed.log",
        TIMEOUT,
        "a committed step-2 checkpoint",
    )
    killed.send_signal(signal.SIGKILL)
    killed.wait(TIMEOUT)
    at_kill = _committed_steps(workdir)
    logged_before = len(_logged_train_steps(workdir))

    terminated = start(command, env, root / "terminated.log")
    wait_for(
        lambda: len(_logged_train_steps(workdir)) > logged_before,
        terminated,
        root / "terminated.log",
        TIMEOUT,
        "a step logged by the resumed run",
    )
    terminated.send_signal(signal.SIGTERM)
    terminated.wait(TIMEOUT)
    assert uninterrupted.wait(TIMEOUT) == 0, (root / "reference.log").read_text()[-4000:]
    return SimpleNamespace(
        reference=reference,
        workdir=workdir,
        killed_code=killed.returncode,
        at_kill=at_kill,
        resumed=_logged_train_steps(workdir)[logged_before:],
        terminated_code=terminated.returncode,
        terminated_log=(root / "terminated.log").read_text(),
        at_term=_committed_steps(workdir),
    )


def _assert_same_state_as_reference(run_: SimpleNamespace, step: int) -> None:
    """The checkpoint of ``step`` (model, optimiser, data iterator) is bitwise the uninterrupted
    run's, and every loss the interrupted runs logged is the uninterrupted run's."""
    ours, theirs = run_.workdir / "checkpoints" / str(step), run_.reference / "checkpoints"
    items = ("model", "opt_state")
    assert_identical(saved_items(ours, *items), saved_items(theirs / str(step), *items))
    iterator = Path("data_iter") / "process_0-of-1.json"
    assert (ours / iterator).read_text() == (theirs / str(step) / iterator).read_text()
    reference_loss = {r["step"]: r["loss"] for r in _logged_train_steps(run_.reference)}
    assert sorted(reference_loss) == list(range(1, TOTAL_STEPS + 1))
    for record in _logged_train_steps(run_.workdir):
        assert record["loss"] == reference_loss[record["step"]], record


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_matches_an_uninterrupted_run(interrupted_run):
    r = interrupted_run
    assert r.killed_code == -signal.SIGKILL
    assert 2 in r.at_kill and r.at_kill[-1] < TOTAL_STEPS, r.at_kill
    assert r.resumed[0]["step"] == r.at_kill[-1] + 1  # it resumed from the newest checkpoint
    # The resumed run trained past the kill point; where it stopped it equals the reference.
    _assert_same_state_as_reference(r, r.at_term[-1])


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(interrupted_run):
    r = interrupted_run
    assert r.terminated_code == 0, r.terminated_log[-4000:]
    stopped_at = r.at_term[-1]
    assert r.at_kill[-1] < stopped_at < TOTAL_STEPS, (r.at_kill, r.at_term)
    assert f"signal {int(signal.SIGTERM)} received: saving step {stopped_at}" in r.terminated_log
    assert r.resumed[-1]["step"] == stopped_at  # the saved step is the last one it trained
    # Resumable: the saved state is exactly the uninterrupted run's state at that step.
    _assert_same_state_as_reference(r, stopped_at)


@pytest.mark.slow
def test_small_main_job_prints_the_table_and_logs_train_and_val(cache_dir, tmp_path):
    workdir = tmp_path / "work"
    command = [
        sys.executable,
        "train_main.py",
        f"--config={SYNTHETIC_CONFIG}",
        f"--workdir={workdir}",
        # The README's job at the other tests' batch size and schedule length (their compiled
        # step): one epoch of 48 synthetic training heads, validated on 8.
        "--config.data.synthetic.num_train=48",
        "--config.data.synthetic.num_test=8",
        "--config.num_epochs=1",
        "--config.warmup_steps=0",
        f"--config.batch_size={BATCH_SIZE}",
        f"--config.eval_batch_size={BATCH_SIZE}",
        "--config.progress=False",
    ]
    result = run(command, subprocess_env(cache_dir), TIMEOUT)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((workdir / "eval_synthetic.json").read_text())
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line.startswith("checkpoint"))
    names = "checkpoint yaw pitch roll mean_mae maev geodesic images"
    assert lines[header].split() == names.split()
    row = lines[header + 2].split()
    assert row[0] == "best" and row[-1] == str(report["num_images"])
    assert float(row[4]) == pytest.approx(report["mean_mae"], abs=5e-4)
    last = re.fullmatch(r"mean MAE (\d+\.\d) deg; mean-pose baseline (\d+\.\d) deg", lines[-1])
    assert last, lines[-1]
    assert last.group(1) == f"{report['mean_mae']:.1f}"
    assert last.group(2) == f"{report['mean_pose_baseline']:.1f}"
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [TOTAL_STEPS]
    val = [r for r in records if r["kind"] == "val"]
    assert len(val) == 1 and val[0]["step"] == TOTAL_STEPS
    assert val[0]["num_images"] == report["num_images"] > 0
    assert val[0]["angle_error"] == report["angle_error"] == "plain"
    assert read_meta(workdir / "best")["val"]["angle_error"] == "plain"
    # Inference crops images to the run's data.image_size (64 here), not the model's 224.
    for saved in (workdir / "best", workdir / "checkpoints"):
        assert checkpoint_input_size(saved) == 64
