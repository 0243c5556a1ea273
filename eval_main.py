"""Evaluates head-pose checkpoints: MAE per angle, their mean, MAEV and geodesic error (degrees).

    python eval_main.py --config=configs/eval_aflw2000.py --checkpoint=PATH \\
        --config.data.val_dir=DATASET [--config.key=value ...]

PATH is an orbax checkpoint step directory, an original PyTorch checkpoint file (.pkl / .pth /
.pt, converted on the fly as ``config.model.variant``), or a directory: a training workdir (every
step in ``checkpoints/`` and ``best/``), a directory of numbered steps, or the original's snapshot
folder (``1.pkl`` ... ``N.pkl``). Every checkpoint found is evaluated and, for several, the best
(lowest mean MAE) is named, as the original's per-epoch sweep.

Uses the evaluation fields of the training configs (``config.data.val_dir`` / ``val_split`` /
``val_mode`` / ``val_input_size`` / ``image_size``, ``config.eval_batch_size``,
``config.model.variant``, ``config.progress``), so a training recipe evaluates its own
validation set as it is. Prints a table and writes the same numbers as JSON to ``--output``,
by default ``eval_<dataset>_<split>.json`` in PATH (a directory) or ``<stem>_eval_<dataset>_
<split>.json`` beside PATH (a file). One process, one device. A bad flag, config key or value,
checkpoint or dataset ends with one line naming it and exit status 2 (``--verbose``: with the
traceback); in a sweep, checkpoints that cannot be evaluated are listed in the report, the others
evaluated, and the exit status is 2.
"""

from __future__ import annotations

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from hpe_jax.cli import run_cli
from hpe_jax.cli_flags import parse_flags
from hpe_jax.config_check import check_eval_config
from hpe_jax.evaluate import evaluate_and_report
from hpe_jax.host_memory import retain_freed_host_memory

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Evaluation configuration file.", lock_config=True)
flags.DEFINE_string(
    "checkpoint", None, "Checkpoint, PyTorch checkpoint file, or a directory of them."
)
flags.DEFINE_string("output", None, "JSON report path (default: beside the checkpoint).")
flags.DEFINE_bool("verbose", False, "Show the traceback of an error.")
flags.mark_flags_as_required(["config", "checkpoint"])


def run(config: ml_collections.ConfigDict, checkpoint: str, output: str | None) -> None:
    """Checks the config, then evaluates and reports (``evaluate_and_report``)."""
    check_eval_config(config)
    evaluate_and_report(config, checkpoint, output)


def main(argv: list[str]) -> int:
    del argv
    retain_freed_host_memory()  # before the first computation: hpe_jax/host_memory.py
    logging.set_verbosity(logging.WARNING)  # orbax and grain log every operation at INFO
    return run_cli(lambda: run(FLAGS.config, FLAGS.checkpoint, FLAGS.output), verbose=FLAGS.verbose)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
