"""Hostile input at the training and evaluation entry points (issue 17): bad flags and config
values, a synthetic workdir of other parameters, a second live run on a workdir, a full disk, a
damaged checkpoint in an evaluation sweep, a batch that does not split over the devices and a
bad value in the ahead-of-time compiler's config each end in one error line (exit status 2)
before any work. ``train_main`` and ``eval_main`` run in this process (``cli_main``)."""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import sys
from pathlib import Path

import jax
import pytest
from absl import flags
from absl import logging as absl_logging  # noqa: F401  (its flags exist before flagsaver saves)
from absl.testing import flagsaver
from records_builder import write_split
from train_support import REPO

import hpe_jax
from configs import synthetic
from data_prep.synthetic_data import PARAMS_FILE, check_params
from data_prep.synthetic_job import run_synthetic_job
from hpe_jax import aot, checkpoint, evaluate
from hpe_jax.cli import run_cli
from hpe_jax.cli_flags import parse_flags
from hpe_jax.config_check import check_train_config
from hpe_jax.errors import UserError
from hpe_jax.folder_lock import FolderBusyError

# ml_collections loads a config file with importlib's deprecated load_module().
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

SYNTHETIC = str(REPO / "configs" / "synthetic.py")
TINY_SYNTHETIC = [
    "--config.data.synthetic.num_train=4",
    "--config.data.synthetic.num_test=2",
    "--config.data.synthetic.image_size=64",
    "--config.batch_size=2",
    "--config.eval_batch_size=2",
    "--config.progress=false",
]


@pytest.fixture
def cli_main(monkeypatch):
    """``cli_main(script, *args) -> exit status``: parses ``args`` as ``script``'s command line
    (``parse_flags``, as ``app.run`` does) and calls ``main`` of ``train_main`` or ``eval_main``
    in this process. Their absl flags (both define ``--config``) are removed after each call and
    the absl logger's level (``main`` sets it) is restored."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level

    def call(script: str, *args: str) -> int:
        argv = [f"{script}.py", *args]
        monkeypatch.setattr(sys, "argv", argv)  # config_flags reads its overrides from sys.argv
        with flagsaver.flagsaver():
            module = importlib.import_module(script)
            monkeypatch.setattr(module, "retain_freed_host_memory", lambda: True)
            try:
                return module.main(parse_flags(argv))
            except SystemExit as exit_:
                return exit_.code
            finally:
                flags.FLAGS.unparse_flags()
                del sys.modules[script]

    yield call
    absl_logger.setLevel(level)


ZSTD_FRAME = b"\x28\xb5\x2f\xfd"  # the magic number that starts every zstd frame


def _one_error_line(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def _damage_a_chunk(step_dir: Path) -> None:
    """Flips the header of the middle compressed chunk of the largest data file of the
    ``model`` item: reading that array fails in the decompressor (orbax wraps the error in a
    bare ``Exception``), whatever the order of the arrays in the file."""
    files = [p for p in (step_dir / checkpoint.MODEL_ITEM).rglob("*") if p.parent.name == "d"]
    largest = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    frames = [data.find(ZSTD_FRAME)]
    while (found := data.find(ZSTD_FRAME, frames[-1] + 1)) >= 0:
        frames.append(found)
    start = frames[len(frames) // 2] + len(ZSTD_FRAME)
    data[start : start + 64] = bytes(b ^ 0xFF for b in data[start : start + 64])
    largest.write_bytes(bytes(data))


def test_a_damaged_chunk_is_one_line_and_the_sweep_reports_the_rest(
    tmp_path, monkeypatch, capsys, cli_main
):
    model = hpe_jax.init_model("s", seed=0)
    good = checkpoint.save_model(tmp_path / "wd" / "1", model, hpe_jax.get_config("s"))
    bad = tmp_path / "wd" / "2"
    shutil.copytree(good, bad)
    _damage_a_chunk(bad)

    assert run_cli(lambda: hpe_jax.load_model(bad) and None) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: checkpoint {bad}: ") and "ZSTD" in line  # the reader's error

    write_split(tmp_path / "data", "test", [(1.0, 2.0, 3.0)] * 2)
    metrics = {"yaw": 1.0, "pitch": 2.0, "roll": 3.0, "mean_mae": 2.0, "maev": 1.0}
    metrics |= {"geodesic": 1.0, "num_images": 2, "angle_error": "plain"}
    monkeypatch.setattr(evaluate, "evaluate_network", lambda *a, **k: dict(metrics))
    out = tmp_path / "report.json"
    status = cli_main(
        "eval_main",
        f"--config={REPO / 'configs' / 'eval_aflw2000.py'}",
        f"--checkpoint={tmp_path / 'wd'}",
        f"--output={out}",
        f"--config.data.val_dir={tmp_path / 'data'}",
        "--config.progress=false",
    )
    assert status == 2
    *_, last = capsys.readouterr().err.strip().splitlines()
    assert last.startswith("error: ") and "1 of 2 checkpoints could not be evaluated" in last
    report = json.loads(out.read_text())
    assert report["checkpoints"]["1"]["path"] == str(good)
    assert list(report["failed"]) == ["2"] and "ZSTD" in report["failed"]["2"]


@pytest.mark.parametrize(
    ("arg", "line"),
    [
        ("--config.model.variant=x", "error: config.model.variant = 'x': expected one of s, m, l"),
        ("--config.num_epochs=0", "error: config.num_epochs = 0: expected an integer >= 1"),
        ("--config.num_epochs=-1", "error: config.num_epochs = -1: expected an integer >= 1"),
        ("--config.batch_size=0", "error: config.batch_size = 0: expected an integer >= 1"),
        (
            "--config.data.synthetic.num_train=0",
            "error: config.data.synthetic.num_train = 0: expected an integer >= 1",
        ),
        (
            "--config.data.num_threads=-1",
            "error: config.data.num_threads = -1: expected an integer >= 0",
        ),
        (
            "--config.init_from=no/such/checkpoint",
            "error: config.init_from = 'no/such/checkpoint': expected an existing checkpoint (or "
            "'' for none)",
        ),
        (
            "--config.bach_size=8",
            "error: --config.bach_size=8: the config has no key 'bach_size'; did you mean "
            '"batch_size" instead of "bach_size"?',
        ),
        (
            "--config.batch_size=two",
            "error: flag --config.batch_size=two: invalid literal for int() with base 10: 'two'",
        ),
    ],
    ids=lambda value: value if value.startswith("--") else "",
)
def test_train_main_refuses_a_bad_value_before_any_work(tmp_path, capsys, cli_main, arg, line):
    workdir = tmp_path / "wd"
    assert cli_main("train_main", f"--config={SYNTHETIC}", f"--workdir={workdir}", arg) == 2
    assert _one_error_line(capsys) == line
    assert not workdir.exists()


def test_a_bucket_init_from_is_left_to_the_loader():
    config = synthetic.get_config()
    config.init_from = "gs://bucket/workdir/best"
    check_train_config(config, runtime=False)
    config.init_from = "gs:/bucket/workdir/best"  # not a URL: a local path that does not exist
    with pytest.raises(UserError, match=r"config\.init_from = 'gs:/bucket"):
        check_train_config(config, runtime=False)


def test_train_main_verbose_shows_the_traceback(tmp_path, cli_main):
    args = [f"--config={SYNTHETIC}", f"--workdir={tmp_path / 'wd'}", "--config.num_epochs=0"]
    with pytest.raises(UserError, match=r"config\.num_epochs = 0"):
        cli_main("train_main", *args, "--verbose")


def test_eval_main_refuses_a_bad_value(tmp_path, capsys, cli_main):
    args = [f"--config={REPO / 'configs' / 'eval_aflw2000.py'}", f"--checkpoint={tmp_path}"]
    assert cli_main("eval_main", *args) == 2
    assert _one_error_line(capsys) == (
        "error: config.data.val_dir = '': expected the dataset to evaluate on"
    )
    assert cli_main("eval_main", *args, "--config.eval_batch_size=0") == 2
    assert _one_error_line(capsys) == "error: config.eval_batch_size = 0: expected an integer >= 1"


def test_train_main_refuses_a_synthetic_workdir_of_other_parameters(tmp_path, capsys, cli_main):
    data = tmp_path / "wd" / "data"
    check_params(data, {"num_train": 4, "num_test": 2, "image_size": 64, "seed": 0})
    recorded = (data / PARAMS_FILE).read_text()
    args = [f"--config={SYNTHETIC}", f"--workdir={tmp_path / 'wd'}", *TINY_SYNTHETIC]
    assert cli_main("train_main", *args, "--config.data.synthetic.num_train=6") == 2
    assert _one_error_line(capsys) == (
        f"error: {data} holds synthetic data generated with other parameters (num_train 4 "
        "there, 6 asked); not reused or replaced: use a new --workdir"
    )
    assert [p.name for p in data.iterdir()] == [PARAMS_FILE]
    assert (data / PARAMS_FILE).read_text() == recorded


def test_train_main_refuses_a_second_live_run(tmp_path, capsys, cli_main, hold_lock):
    workdir = tmp_path / "wd"
    pid = hold_lock(workdir)
    args = [f"--config={SYNTHETIC}", f"--workdir={workdir}", *TINY_SYNTHETIC]
    assert cli_main("train_main", *args) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {workdir} is in use by pid {pid} on ")
    assert not (workdir / "data").exists()


def test_train_main_names_the_workdir_on_a_full_disk(tmp_path, capsys, cli_main, monkeypatch):
    def write_fails(*args, **kwargs):
        raise ValueError(
            'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database: No space left on '
            "device [os_error_code='28']"
        )

    monkeypatch.setattr("data_prep.synthetic_job.run_synthetic_job", write_fails)
    workdir = tmp_path / "wd"
    assert cli_main("train_main", f"--config={SYNTHETIC}", f"--workdir={workdir}") == 2
    assert _one_error_line(capsys) == (
        f"error: {workdir}: no space left on the device (disk or quota full); free space and rerun"
    )


def test_train_main_refuses_a_workdir_that_is_a_file(tmp_path, capsys, cli_main):
    workdir = tmp_path / "notes.txt"
    workdir.write_text("keep")
    assert cli_main("train_main", f"--config={SYNTHETIC}", f"--workdir={workdir}") == 2
    assert _one_error_line(capsys) == (
        f"error: --workdir {workdir}: not a folder; expected a new or existing folder"
    )
    assert workdir.read_text() == "keep"


def _tiny_synthetic_config():
    config = synthetic.get_config()
    config.data.synthetic.update({"num_train": 4, "num_test": 2, "image_size": 64})
    config.batch_size = config.eval_batch_size = 2
    config.progress = False
    return config


def test_synthetic_job_takes_the_workdir_lock_before_making_data(tmp_path, hold_lock):
    workdir = tmp_path / "wd"
    pid = hold_lock(workdir)
    with pytest.raises(FolderBusyError, match=f"in use by pid {pid}"):
        run_synthetic_job(_tiny_synthetic_config(), workdir)
    assert not (workdir / "data").exists()


def test_synthetic_job_checks_the_device_split_before_making_data(tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "device_count", lambda: 3)
    workdir = tmp_path / "wd"
    with pytest.raises(UserError, match=r"config\.batch_size = 2: expected a multiple of .* 3"):
        run_synthetic_job(_tiny_synthetic_config(), workdir)
    assert not (workdir / "data").exists()


def test_aot_checks_the_config_before_compiling(tmp_path, capsys):
    recipe = tmp_path / "bad_lr.py"
    recipe.write_text(
        "from configs import default\n\n\n"
        "def get_config():\n"
        "    config = default.get_config()\n"
        "    config.learning_rate = -1.0\n"
        "    return config\n"
    )
    args = ["--topology", "v5e-4", "--per-device-batch", "4", "--image-size", "64"]
    assert aot.main([*args, "--config", str(recipe)]) == 2
    assert _one_error_line(capsys) == (
        "error: config.learning_rate = -1.0: expected a finite number > 0"
    )
