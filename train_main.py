"""Trains the head-pose network.

    python train_main.py --config=configs/synthetic.py --workdir=/tmp/hpe [--config.key=value ...]

Runs fresh, resumes from the workdir's latest checkpoint, or transfers from
``--config.init_from``. With ``config.data.synthetic`` set, synthetic heads are generated and
converted under ``<workdir>/data`` first, and the run ends with an evaluation table.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from hpe_jax.host_memory import retain_freed_host_memory
from hpe_jax.process import start_process
from hpe_jax.train import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and generated data.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    retain_freed_host_memory()  # before the first computation: hpe_jax/host_memory.py
    logging.set_verbosity(logging.WARNING)  # orbax and grain log every operation at INFO
    start_process(FLAGS.config.distributed)
    if FLAGS.config.data.synthetic is not None:
        from data_prep.synthetic_job import run_synthetic_job

        run_synthetic_job(FLAGS.config, FLAGS.workdir)
    else:
        train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
