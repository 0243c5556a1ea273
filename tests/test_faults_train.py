"""Hostile input at the training and evaluation entry points (issue 17): a damaged checkpoint
chunk, a second run on a synthetic workdir, a batch that does not split over the devices and a
bad value in the ahead-of-time compiler's config each end in one error line before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import pytest
from records_builder import write_split
from train_support import standard_config

import hpe_jax
from configs import synthetic
from data_prep.synthetic_job import run_synthetic_job
from hpe_jax import aot, checkpoint, evaluate
from hpe_jax.cli import run_cli
from hpe_jax.errors import UserError
from hpe_jax.folder_lock import FolderBusyError

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


def test_a_damaged_chunk_is_one_line_and_the_sweep_reports_the_rest(tmp_path, monkeypatch, capsys):
    model = hpe_jax.init_model("s", seed=0)
    good = checkpoint.save_model(tmp_path / "wd" / "1", model, hpe_jax.get_config("s"))
    bad = tmp_path / "wd" / "2"
    shutil.copytree(good, bad)
    _damage_a_chunk(bad)

    assert run_cli(lambda: hpe_jax.load_model(bad) and None) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: checkpoint {bad}: its weights cannot be read")
    assert "ZSTD" in line

    write_split(tmp_path / "data", "test", [(1.0, 2.0, 3.0)] * 2)
    metrics = {"yaw": 1.0, "pitch": 2.0, "roll": 3.0, "mean_mae": 2.0, "maev": 1.0}
    metrics |= {"geodesic": 1.0, "num_images": 2, "angle_error": "plain"}
    monkeypatch.setattr(evaluate, "evaluate_network", lambda *a, **k: dict(metrics))
    config = standard_config("", data__val_dir=str(tmp_path / "data"), progress=False)
    out = tmp_path / "report.json"
    with pytest.raises(evaluate.EvalError, match="1 of 2 checkpoints could not be evaluated"):
        evaluate.evaluate_and_report(config, tmp_path / "wd", out)
    report = json.loads(out.read_text())
    assert report["checkpoints"]["1"]["path"] == str(good)
    assert list(report["failed"]) == ["2"] and "ZSTD" in report["failed"]["2"]


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
