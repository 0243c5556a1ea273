"""Hostile and careless input: every case ends in a one-line error, a counted skip or a correct
result, and nothing the user did not name is deleted or replaced."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import grain
import numpy as np
import pytest
import scipy.io
from records_builder import write_split
from test_data_prep import records, write_300wlp
from train_support import standard_config

import hpe_jax
from data_prep import inspect as inspect_cli
from data_prep.common import ConversionError
from data_prep.convert import convert
from data_prep.convert import main as convert_main
from data_prep.synthetic_data import check_params
from hpe_jax import checkpoint, evaluate
from hpe_jax.config_check import check_eval_config, check_train_config
from hpe_jax.convert_torch import load_torch_state_dict, read_torch_checkpoint, torch_entries
from hpe_jax.convert_torch import main as convert_torch_main
from hpe_jax.data.source import num_records
from hpe_jax.errors import UserError
from hpe_jax.folder_lock import FolderBusyError
from hpe_jax.train import train_and_evaluate
from hpe_jax.train_state import create_train_state, make_optimizer

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    return line


# --- data lost ------------------------------------------------------------------------------


def test_convert_torch_never_replaces_a_foreign_output(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["--checkpoint", str(tmp_path / "x.pkl"), "--output", str(out)]
    assert convert_torch_main(args) == 2
    assert "is not empty (notes.txt)" in _one_error_line(capsys)
    assert convert_torch_main([*args, "--overwrite"]) == 2
    assert "not a checkpoint" in _one_error_line(capsys)
    assert (out / "notes.txt").read_text() == "mine"


def test_existing_split_is_replaced_only_when_named(tmp_path, capsys):
    data, other = tmp_path / "a", tmp_path / "b"
    write_300wlp(data, "AFW/AFW_0", (1, 2, 3), seed=0)
    write_300wlp(other, "AFW/AFW_1", (4, 5, 6), seed=1)
    write_300wlp(other, "AFW/AFW_2", (7, 8, 9), seed=2)
    out = tmp_path / "out"
    convert("300w_lp", data, out, split="train", progress=False)
    convert("300w_lp", data, out, split="valid", progress=False)
    base = ["--dataset", "300w_lp", "--output_dir", str(out), "--no_progress", "--workers", "1"]
    assert convert_main([*base, "--data_dir", str(other)]) == 2
    assert "already holds split 'train' (1 records)" in _one_error_line(capsys)
    assert [r["name"] for r in records(out)] == ["AFW/AFW_0"]
    assert convert_main([*base, "--data_dir", str(other), "--overwrite"]) == 0
    assert [r["name"] for r in records(out)] == ["AFW/AFW_1", "AFW/AFW_2"]
    assert [r["name"] for r in records(out, "valid")] == ["AFW/AFW_0"]  # the other split kept
    assert num_records(out, "train") == 2


def test_second_converter_is_refused_and_leaves_the_first_ones_files(tmp_path, hold_lock, capsys):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (1, 2, 3), seed=0)
    out = tmp_path / "out"
    pid = hold_lock(out)
    live = out / f".w300lp-train.tmp-{pid}"
    live.mkdir()
    args = ["--dataset", "300w_lp", "--data_dir", str(data), "--output_dir", str(out)]
    assert convert_main([*args, "--no_progress", "--workers", "1"]) == 2
    assert f"in use by pid {pid} on" in _one_error_line(capsys)
    assert live.is_dir()


# --- silently wrong ----------------------------------------------------------------------


def _write_pose_para(path: Path, para: np.ndarray) -> None:
    mat = scipy.io.loadmat(path)
    mat["Pose_Para"] = para
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("__")})


def test_pose_not_finite_in_float32_degrees_is_a_bad_sample(tmp_path):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (1, 2, 3), seed=0)
    write_300wlp(data, "AFW/AFW_1", (1, 2, 3), seed=1)
    _write_pose_para(data / "AFW/AFW_1.mat", np.array([[0.1, 1e38, 0.0, 1, 1, 0, 1]]))
    with pytest.raises(ConversionError, match=r"AFW_1.*pose is not finite in float32"):
        convert("300w_lp", data, tmp_path / "fail", progress=False)
    meta = convert("300w_lp", data, tmp_path / "skip", on_error="skip", progress=False)
    assert meta["num_records"] == 1 and meta["num_skipped"] == 1
    assert np.all(np.isfinite(records(tmp_path / "skip")[0]["pose"]))


def test_complex_pose_is_refused(tmp_path):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (1, 2, 3), seed=0)
    _write_pose_para(data / "AFW/AFW_0.mat", np.array([[0.1 + 2j, 0.2, 0, 1, 1, 0, 1]]))
    with pytest.raises(ConversionError, match="Pose_Para: complex values"):
        convert("300w_lp", data, tmp_path / "out", progress=False)


def test_pose_the_bins_cannot_label_is_filtered_and_counted(tmp_path):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (103, 2, 3), seed=0)
    write_300wlp(data, "AFW/AFW_1", (99.5, 2, 3), seed=1)
    meta = convert("300w_lp", data, tmp_path / "out", progress=False)
    assert meta["num_records"] == 1 and meta["num_filtered"] == 1
    assert "angle bins" in meta["filtered"][0]["reason"]
    kept = convert("300w_lp", data, tmp_path / "all", max_abs_angle=None, progress=False)
    assert kept["num_records"] == 2  # --no_angle_filter keeps it, as asked


def test_duplicate_list_lines_are_refused(tmp_path):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (1, 2, 3), seed=0)
    names = tmp_path / "list.txt"
    names.write_text("AFW/AFW_0\n./AFW/AFW_0\n")
    with pytest.raises(ConversionError, match=r"1 duplicate line.*line 2 repeats line 1"):
        convert("300w_lp", data, tmp_path / "out", filename_list=names, progress=False)


@pytest.fixture
def dataset(tmp_path) -> Path:
    write_split(tmp_path / "data", "train", [(1.0, 2.0, 3.0)] * 4, num_shards=2)
    return tmp_path / "data"


def test_edited_split_size_is_refused_naming_the_file(dataset, capsys):
    (info_path,) = dataset.glob("*/*/*/dataset_info.json")
    info = json.loads(info_path.read_text())
    info["splits"][0]["shardLengths"] = ["2", "5"]
    info_path.write_text(json.dumps(info))
    with pytest.raises(UserError, match=r"-00001-of-00002: holds 2 records, .* says 5"):
        num_records(dataset, "train")
    assert inspect_cli.main([str(dataset)]) == 2
    assert "holds 2 records" in _one_error_line(capsys)


def test_unknown_dataset_version_is_refused(dataset):
    (info_path,) = dataset.glob("*/*/*/dataset_info.json")
    info = json.loads(info_path.read_text())
    info["version"] = "9.0.0"
    info_path.write_text(json.dumps(info))
    with pytest.raises(UserError, match=r"dataset version 9.0.0; this hpe-jax reads 1.0.0"):
        num_records(dataset, "train")


def test_truncated_record_file_is_named(dataset):
    (first, _) = sorted(dataset.glob("*/*/*/*.array_record-*"))
    first.write_bytes(first.read_bytes()[:50])
    with pytest.raises(UserError, match=f"{first.name}: damaged record file"):
        num_records(dataset, "train")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_epochs", 0, "config.num_epochs = 0: expected an integer >= 1"),
        ("num_epochs", -1, "config.num_epochs = -1: expected an integer >= 1"),
        ("batch_size", 0, "config.batch_size = 0: expected an integer >= 1"),
        ("batch_size", 8, "config.batch_size = 8: expected at most the 4 records"),
        ("model.variant", "x", "config.model.variant = 'x': expected one of s, m, l"),
        ("learning_rate", float("nan"), "config.learning_rate = nan: expected a finite number"),
        ("data.image_size", 8, "config.data.image_size = 8: expected an integer >= 32"),
        ("val_metric", "l1", "config.val_metric = 'l1': expected one of plain, wrapped"),
        ("data.train_split", "nope", "has no split 'nope'"),
        ("init_from", "/no/such/ckpt", "config.init_from = '/no/such/ckpt': expected an existing"),
    ],
)
def test_config_is_checked_before_any_work(dataset, key, value, message):
    config = standard_config(dataset, batch_size=2, eval_batch_size=2)
    check_train_config(config)
    config.update_from_flattened_dict({key: value})
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_train_config(config)


def test_eval_config_needs_its_dataset(tmp_path):
    config = standard_config("")
    with pytest.raises(UserError, match=r"config.data.val_dir = '': expected the dataset"):
        check_eval_config(config)
    config.data.val_dir = str(tmp_path / "missing")
    with pytest.raises(UserError, match=r"config.data.val_dir = .*missing.*no TFDS dataset"):
        check_eval_config(config)


def test_synthetic_workdir_refuses_other_parameters(tmp_path):
    params = {"num_train": 10, "num_test": 4, "image_size": 64, "seed": 0}
    check_params(tmp_path / "data", params)
    check_params(tmp_path / "data", params)  # the same: reused
    with pytest.raises(UserError, match=r"num_train 10 there, 20 asked.*use a new --workdir"):
        check_params(tmp_path / "data", {**params, "num_train": 20})
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "w300lp").mkdir()
    with pytest.raises(UserError, match=r"holds files but no synthetic_params.json"):
        check_params(tmp_path / "old", params)


# --- checkpoints ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    return hpe_jax.init_model("s", seed=0)


def _data_files(step_dir: Path, item: str) -> list[Path]:
    files = [p for p in (step_dir / item).rglob("*") if p.is_file() and "d" in p.parent.name]
    return sorted(files, key=lambda p: p.stat().st_size)


def test_flipped_bytes_in_a_checkpoint_are_found(tmp_path, small_model):
    step = checkpoint.save_model(tmp_path / "ckpt", small_model, hpe_jax.get_config("s"))
    biggest = _data_files(step, checkpoint.MODEL_ITEM)[-1]
    data = bytearray(biggest.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    biggest.write_bytes(bytes(data))
    # Caught by the digest, or by the decompressor when the bytes hit a chunk's header (the
    # arrays' order in the file varies between saves).
    damaged = r"checkpoint .*ckpt(: array model.* is damaged|: its weights cannot be read)"
    with pytest.raises(UserError, match=damaged):
        hpe_jax.load_model(step)


def test_non_finite_weights_are_refused_with_their_name(small_model):
    key, variable, _ = next(e for e in torch_entries(small_model) if e[0].endswith(".bias"))
    weight = np.zeros(variable.shape, np.float32)
    weight[0] = np.nan
    with pytest.raises(UserError, match=rf"{re.escape(key)}: 1 of .* NaN or Inf"):
        load_torch_state_dict(small_model, {key: weight})


@pytest.mark.parametrize("content", [b"", b"\x80\x02garbage that is not a checkpoint"])
def test_unreadable_torch_checkpoint_is_named(tmp_path, content):
    pytest.importorskip("torch")
    path = tmp_path / "101.pkl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"101\.pkl: not a readable PyTorch checkpoint"):
        read_torch_checkpoint(path)


def _iterator():
    return iter(grain.MapDataset.range(16).to_iter_dataset())


def test_resume_falls_back_to_the_newest_intact_step(tmp_path, small_model, caplog):
    config = standard_config("")
    tx = make_optimizer(config, 10)
    state = create_train_state(small_model, tx, 0)
    tmp = tmp_path / "checkpoints" / f"7{'.orbax-checkpoint-tmp'}-123"
    tmp.mkdir(parents=True)
    manager = checkpoint.make_manager(tmp_path / "checkpoints", 3)
    for step in (2, 4):
        iterator = _iterator()
        for _ in range(step):
            next(iterator)
        checkpoint.save_train_state(
            manager, state.replace(step=np.int32(step)), config.model, epoch=step, iterator=iterator
        )
    manager.wait_until_finished()
    manager.close()
    assert not tmp.exists()  # the interrupted save's leftovers are gone
    for path in _data_files(tmp_path / "checkpoints" / "4", checkpoint.OPT_ITEM):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    iterator = _iterator()
    restored, epoch = checkpoint.restore_train_state(manager, state, iterator)
    manager.close()
    assert int(restored.step) == 2 and epoch == 2 and next(iterator) == 2
    assert any("cannot resume from step 4" in r.getMessage() for r in caplog.records)


def test_eval_sweep_reports_the_good_steps_and_fails(tmp_path, small_model, monkeypatch, capsys):
    write_split(tmp_path / "data", "test", [(1.0, 2.0, 3.0)] * 2)
    good = checkpoint.save_model(tmp_path / "wd" / "1", small_model, hpe_jax.get_config("s"))
    bad = checkpoint.save_model(tmp_path / "wd" / "2", small_model, hpe_jax.get_config("s"))
    (bad / checkpoint.META_ITEM / "metadata").write_text("{not json")
    metrics = {"yaw": 1.0, "pitch": 2.0, "roll": 3.0, "mean_mae": 2.0, "maev": 1.0}
    metrics |= {"geodesic": 1.0, "num_images": 2, "angle_error": "plain"}
    monkeypatch.setattr(evaluate, "evaluate_network", lambda *a, **k: dict(metrics))
    config = standard_config("", data__val_dir=str(tmp_path / "data"), progress=False)
    out = tmp_path / "report.json"
    with pytest.raises(evaluate.EvalError, match="1 of 2 checkpoints could not be evaluated"):
        evaluate.evaluate_and_report(config, tmp_path / "wd", out)
    report = json.loads(out.read_text())
    assert list(report["checkpoints"]) == ["1"] and list(report["failed"]) == ["2"]
    assert report["checkpoints"]["1"]["path"] == str(good)


# --- workdir and entry points ------------------------------------------------------------


def test_second_training_run_on_a_workdir_is_refused(dataset, tmp_path, hold_lock):
    workdir = tmp_path / "wd"
    pid = hold_lock(workdir)
    config = standard_config(dataset, batch_size=2, eval_batch_size=2)
    with pytest.raises(FolderBusyError, match=f"in use by pid {pid}"):
        train_and_evaluate(config, workdir)


def test_disk_full_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (1, 2, 3), seed=0)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("data_prep.convert.publish", full)
    out = tmp_path / "out"
    args = ["--dataset", "300w_lp", "--data_dir", str(data), "--output_dir", str(out)]
    assert convert_main([*args, "--no_progress", "--workers", "1"]) == 2
    assert _one_error_line(capsys) == (
        f"error: {out}: no space left on the device (disk or quota full); free space and rerun"
    )
    assert os.listdir(out) == []  # no split visible, no staging folder left


def test_train_main_reports_a_mistyped_key_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train_main.py"),
            "--config=configs/default.py",
            f"--workdir={tmp_path / 'wd'}",
            "--config.bach_size=0",
        ],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --config.bach_size=0: the config has no key 'bach_size'; did you mean "
        '"batch_size" instead of "bach_size"?'
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "wd").exists()


def test_damaged_record_names_its_file(dataset):
    from hpe_jax.data.source import split_source

    (first, _) = sorted(dataset.glob("*/*/*/*.array_record-*"))
    data = bytearray(first.read_bytes())
    data[200:1200] = bytes(b ^ 0xFF for b in data[200:1200])
    first.write_bytes(bytes(data))
    source = split_source(dataset, "train")
    with pytest.raises(UserError, match=rf"{first.name}, record 0: unreadable \(Corrupted"):
        source[0]
    with pytest.raises(UserError, match=rf"{first.name}, record 0: unreadable"):
        source.__getitems__([1, 0])
