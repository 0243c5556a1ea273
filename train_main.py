"""Trains the head-pose network.

    python train_main.py --config=configs/synthetic.py --workdir=/tmp/hpe [--config.key=value ...]

Runs fresh, resumes from the workdir's latest checkpoint, or transfers from
``--config.init_from``. With ``config.data.synthetic`` set, synthetic heads are generated and
converted under ``<workdir>/data`` first, and the run ends with an evaluation table. A bad
flag, config key or value, file or folder ends the run with one line naming it and exit status 2
(``--verbose``: with the traceback).
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from hpe_jax.cli import run_cli
from hpe_jax.cli_flags import parse_flags
from hpe_jax.config_check import check_train_config
from hpe_jax.errors import UserError
from hpe_jax.host_memory import retain_freed_host_memory
from hpe_jax.process import start_process
from hpe_jax.train import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and generated data.")
flags.DEFINE_bool("verbose", False, "Show the traceback of an error.")
flags.mark_flags_as_required(["config", "workdir"])


def run(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Checks the config's values and the workdir, joins the run's processes and trains (the
    synthetic job when ``config.data.synthetic`` is set); ``train_and_evaluate`` checks the
    devices and data."""
    check_train_config(config, runtime=False)
    if Path(workdir).exists() and not Path(workdir).is_dir():
        raise UserError(f"--workdir {workdir}: not a folder; expected a new or existing folder")
    start_process(config.distributed)
    if config.data.synthetic is not None:
        from data_prep.synthetic_job import run_synthetic_job

        run_synthetic_job(config, workdir)
    else:
        train_and_evaluate(config, workdir)


def main(argv: list[str]) -> int:
    del argv
    retain_freed_host_memory()  # before the first computation: hpe_jax/host_memory.py
    logging.set_verbosity(logging.WARNING)  # orbax and grain log every operation at INFO
    return run_cli(
        lambda: run(FLAGS.config, FLAGS.workdir), verbose=FLAGS.verbose, folder=FLAGS.workdir
    )


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
