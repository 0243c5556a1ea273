"""The training loop: sharded jitted steps, orbax checkpoints (resume / transfer), validation,
logging. ``train_main.py`` calls ``train_and_evaluate``."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from hpe_jax import checkpoint
from hpe_jax.compiler_options import compiler_options
from hpe_jax.config_check import check_train_config
from hpe_jax.data.loaders import data_sharding, make_loader
from hpe_jax.data.source import num_records
from hpe_jax.errors import UserError
from hpe_jax.evaluate import evaluate_batches
from hpe_jax.folder_lock import folder_lock
from hpe_jax.metrics_writer import MetricsWriter
from hpe_jax.models import HPENet
from hpe_jax.train_state import (
    build_model,
    create_train_state,
    learning_rate_schedule,
    make_train_step,
    predict_angles,
    split_model,
)


class StopRequested:
    """Turns SIGTERM and SIGINT into a flag that the loop checks after each step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None


def load_initial_weights(model: HPENet, path: str) -> None:
    """Transfer: copies the weights at ``path`` (an orbax checkpoint, or a PyTorch checkpoint
    file of the original) into ``model`` in place."""
    if Path(path).is_file():
        from hpe_jax.convert_torch import load_torch_state_dict, read_torch_checkpoint

        load_torch_state_dict(model, read_torch_checkpoint(path))
        return
    stored = checkpoint.read_meta(path).get("variant")
    if stored is not None and stored != model.variant:
        raise UserError(
            f"init_from {path} holds variant {stored!r}, the config asks for {model.variant!r}"
        )
    checkpoint.restore_model_state(path, model)


class Trainer:
    """State and jitted functions of one training run (see ``train_and_evaluate``)."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: Path):
        self.config = config
        self.workdir = workdir
        self.batch_sharding = data_sharding()
        self.mesh = self.batch_sharding.mesh
        self.replicated = NamedSharding(self.mesh, P())

        data = config.data
        self.steps_per_epoch = num_records(data.train_dir, data.train_split) // config.batch_size
        self.total_steps = config.num_epochs * self.steps_per_epoch
        if config.max_steps > 0:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.learning_rate = learning_rate_schedule(config, self.total_steps)

        program = make_train_step(config, self.mesh, self.total_steps)
        self.step_fn, self.eval_def = program.step, program.eval_graphdef
        model = build_model(config, program.platform)
        if config.init_from:
            load_initial_weights(model, config.init_from)
        *_, self.rest = split_model(model)
        self.state = jax.device_put(
            create_train_state(model, program.tx, config.seed), self.replicated
        )
        self.predict_fn = jax.jit(
            functools.partial(predict_angles, graphdef=self.eval_def),
            in_shardings=(self.replicated, self.replicated, self.replicated, self.batch_sharding),
            out_shardings=self.batch_sharding,
            compiler_options=compiler_options(program.platform),
        )
        self.manager = checkpoint.make_manager(workdir / "checkpoints", config.keep_checkpoints)
        self.best_manager = checkpoint.make_manager(workdir / "best", 1)

    def check_finite(self) -> None:
        """Raises FloatingPointError if a loss was NaN/Inf, naming the step as the logs and
        checkpoints count steps (step n: the n-th update), after the in-flight saves commit."""
        bad = int(self.state.nonfinite_step)
        if bad >= 0:
            self.manager.wait_until_finished()
            raise FloatingPointError(
                f"the training loss became NaN or Inf at step {bad + 1}; training stopped (that "
                f"update was not applied); the last checkpoint, step {self.manager.latest_step()},"
                " is intact"
            )

    def best_mean_mae(self) -> float:
        """Validation mean MAE (degrees) of the workdir's best checkpoint; inf when none, or when
        it was measured with another angle error than ``config.val_metric``."""
        step = self.best_manager.latest_step()
        if step is None:
            return float("inf")
        val = checkpoint.read_meta(self.best_manager.directory / str(step))["val"]
        if val.get("angle_error", "plain") != self.config.val_metric:
            return float("inf")
        return float(val["mean_mae"])

    def validate(self) -> dict[str, Any]:
        """Errors of the current state on the validation split (``evaluate_batches``)."""
        s = self.state

        def predict(images: jax.Array) -> jax.Array:
            return self.predict_fn(s.params, s.batch_stats, self.rest, images)

        loader = make_loader(self.config, "val", self.batch_sharding)
        try:
            return evaluate_batches(
                predict, loader, progress=False, angle_error=self.config.val_metric
            )
        finally:
            loader.close()


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, locked: bool = False
) -> dict[str, Any]:
    """Trains (fresh, resumed from ``workdir/checkpoints``, or transferred from
    ``config.init_from``) and validates at each epoch end, keeping the checkpoint of the lowest
    validation mean MAE by ``config.val_metric`` (``plain`` or ``wrapped``, ``evaluate_batches``)
    in ``workdir/best``; returns the last validation metrics (empty without validation data).
    Holds the workdir's lock (``workdir_lock``) while it runs, unless ``locked``: the caller
    holds it."""
    check_train_config(config)
    workdir = Path(workdir)
    with contextlib.nullcontext() if locked else workdir_lock(workdir):
        return _train(config, workdir)


def workdir_lock(workdir: str | Path) -> contextlib.AbstractContextManager[str | None]:
    """The lock of a training workdir (``hpe_jax.folder_lock``): a second live run on it is
    refused with the holder's pid. Taken by process 0 alone (the workdir may be one folder on a
    shared file system, or a bucket where no lock exists; other processes write only their own
    shards of a checkpoint through orbax); for the others, and for a ``://`` workdir, it locks
    nothing."""
    if jax.process_index() != 0 or "://" in str(workdir):
        return contextlib.nullcontext()
    return folder_lock(workdir, "train_main.py training")


def _train(config: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
    data = config.data
    trainer = Trainer(config, workdir)
    writer = MetricsWriter(workdir)
    stop = StopRequested()
    steps_per_epoch, total_steps = trainer.steps_per_epoch, trainer.total_steps
    iterator = make_loader(config, "train", trainer.batch_sharding)
    trainer.state, epoch = checkpoint.restore_train_state(trainer.manager, trainer.state, iterator)
    step = int(trainer.state.step)
    if step:
        logging.info("resumed from step %d (epoch %d)", step, epoch)
    val_metrics: dict[str, Any] = {}
    best = trainer.best_mean_mae()
    bar = tqdm(
        total=total_steps,
        initial=step,
        unit="step",
        disable=not config.progress or jax.process_index() != 0,
        desc="train",
    )

    run_meta = {checkpoint.IMAGE_SIZE_KEY: data.image_size}  # the crops' side, for inference

    def save(epoch: int) -> None:
        trainer.check_finite()
        checkpoint.save_train_state(
            trainer.manager,
            trainer.state,
            config.model,
            epoch=epoch,
            iterator=iterator,
            extra_meta=run_meta,
        )

    window_start, window_steps = time.perf_counter(), 0
    while step < total_steps and not stop:
        batch = next(iterator)
        trainer.state, metrics = trainer.step_fn(trainer.state, batch, trainer.rest)
        step += 1
        window_steps += 1
        bar.update(1)
        end_of_epoch = step % steps_per_epoch == 0
        if step % config.log_every_steps == 0 or end_of_epoch or step == total_steps:
            trainer.check_finite()
            elapsed = time.perf_counter() - window_start
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            values.update(
                epoch=epoch,
                learning_rate=float(trainer.learning_rate(step - 1)),
                images_per_s=window_steps * config.batch_size / elapsed,
            )
            writer.write("train", step, values)
            bar.set_postfix(loss=f"{values['loss']:.3f}", img_s=f"{values['images_per_s']:.1f}")
            window_start, window_steps = time.perf_counter(), 0
        if end_of_epoch:
            epoch += 1
            if data.val_dir:
                val_metrics = trainer.validate()
                writer.write("val", step, {**val_metrics, "epoch": epoch})
                if val_metrics["mean_mae"] < best:
                    best = val_metrics["mean_mae"]
                    checkpoint.save_train_state(
                        trainer.best_manager,
                        trainer.state,
                        config.model,
                        extra_meta={**run_meta, "val": val_metrics},
                    )
            save(epoch)
        elif config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
            save(epoch)
    bar.close()
    if stop:
        logging.warning("signal %s received: saving step %d and stopping", stop.signal, step)
    if stop or (step == total_steps and trainer.manager.latest_step() != step):
        save(epoch)
    trainer.manager.wait_until_finished()
    trainer.best_manager.wait_until_finished()
    iterator.close()
    trainer.check_finite()
    writer.close()
    return val_metrics
