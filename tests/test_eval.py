"""Evaluation (hpe_jax.evaluate, eval_main.py) on tiny synthetic AFLW2000 / BIWI datasets (64 px):
a step directory (checked against a direct computation), a workdir sweep, an original PyTorch
checkpoint (checked against the torch network), the command line, clear errors; checkpoint
discovery; every config in configs/ loads, and the recipes hold the original's settings.

In-process evaluations share one compiled forward (same network structure and batch shape).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
import torch
from flax import nnx
from scipy.spatial.transform import Rotation

import hpe_jax
from data_prep.convert import convert
from data_prep.synthetic import generate
from hpe_jax import evaluate
from hpe_jax.checkpoint import save_model
from hpe_jax.data.loaders import data_sharding, make_loader
from hpe_jax.data.pipeline import EVAL_MODES, make_eval_loader
from hpe_jax.evaluate import METRIC_NAMES, list_checkpoints
from hpe_jax.testing.torch_reference import build_reference_model, decode_angles
from hpe_jax.train_state import predict_angles

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 64
BATCH = 4  # 9 kept images: batches of 4, 4 and 1 + 3 padding
NUM_AFLW = 10
CONFIG_FILES = sorted(p for p in (ROOT / "configs").glob("*.py") if p.name != "__init__.py")
REPORT = "eval_aflw2000_test.json"


def _root_module(name: str):
    """A module at the repository root (configs.*), which is not an installed package."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(name)


def _eval_config(val_dir: Path, name: str = "eval_aflw2000") -> ml_collections.ConfigDict:
    config = _root_module(f"configs.{name}").get_config()
    config.data.val_dir = str(val_dir)
    config.data.image_size = IMAGE_SIZE
    config.eval_batch_size = BATCH
    config.progress = False
    return config


def _parse_table(text: str) -> dict[str, list[float]]:
    """Rows of ``format_table`` output: name -> six metrics and the image count."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("checkpoint")) + 2
    rows = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 + len(METRIC_NAMES):
            break
        rows[parts[0]] = [float(v) for v in parts[1:]]
    return rows


def _check_printed_equals_json(printed: str, report: dict) -> None:
    rows = _parse_table(printed)
    assert list(rows) == list(report["checkpoints"])
    for name, values in rows.items():
        metrics = report["checkpoints"][name]
        expected = [round(metrics[n], 3) for n in METRIC_NAMES] + [metrics["num_images"]]
        np.testing.assert_allclose(values, expected, atol=1e-9)


@pytest.fixture(scope="module")
def aflw(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A data dir holding the converted synthetic AFLW2000 (split 'test'), and the kept
    generated samples."""
    root = tmp_path_factory.mktemp("aflw")
    samples = generate("aflw2000", NUM_AFLW, root / "raw", seed=3, image_size=IMAGE_SIZE)
    convert("aflw2000", root / "raw", root / "data", split="test", progress=False)
    kept = [s for s in samples if s["kept"]]
    assert 0 < len(kept) < NUM_AFLW  # some beyond 99 degrees, filtered as the protocol says
    return root / "data", kept


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A training-workdir layout: checkpoints/1 (seed 0) and best/2 (seed 1), variant s."""
    wd = tmp_path_factory.mktemp("workdir")
    save_model(wd / "checkpoints" / "1", hpe_jax.init_model("s", seed=0), hpe_jax.get_config("s"))
    save_model(wd / "best" / "2", hpe_jax.init_model("s", seed=1), hpe_jax.get_config("s"))
    return wd


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory) -> Path:
    """A checkpoint as the original saves it: {'epoch', 'model': state_dict} in ``7.pkl``."""
    torch.manual_seed(0)
    model = build_reference_model("s")
    path = tmp_path_factory.mktemp("torch") / "7.pkl"
    torch.save({"epoch": 6, "model": model.state_dict()}, path)
    return path


def _direct_metrics(step_dir: Path, config: ml_collections.ConfigDict) -> dict[str, object]:
    """The metrics recomputed here: the loaded model on the decoded eval batches, numpy/scipy."""
    model = hpe_jax.load_model(step_dir)
    graphdef, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    forward = jax.jit(predict_angles, static_argnames="graphdef")
    loader = make_loader(config, "val", data_sharding(jax.local_devices()[:1]))
    preds, gts = [], []
    for batch in loader:
        out = np.asarray(forward(params, batch_stats, rest, batch["image"], graphdef=graphdef))
        mask = np.asarray(batch["mask"])
        preds.append(out[mask])
        gts.append(np.asarray(batch["angles"])[mask])
    pred, gt = np.concatenate(preds).astype(np.float64), np.concatenate(gts).astype(np.float64)

    def matrices(angles: np.ndarray) -> np.ndarray:  # (yaw, pitch, roll) -> Rz Ry Rx
        return Rotation.from_euler("xyz", angles[:, [1, 0, 2]], degrees=True).as_matrix()

    r_pred, r_gt = matrices(pred), matrices(gt)
    cos = np.clip((np.einsum("nij,nij->n", r_pred, r_gt) - 1) / 2, -1, 1)
    rows = np.clip(np.einsum("nij,nij->ni", r_pred, r_gt), -1, 1)
    per_angle = np.abs(pred - gt).mean(axis=0)
    return {
        "yaw": per_angle[0],
        "pitch": per_angle[1],
        "roll": per_angle[2],
        "mean_mae": per_angle.mean(),
        "maev": np.degrees(np.arccos(rows)).mean(),
        "geodesic": np.degrees(np.arccos(cos)).mean(),
        "num_images": len(gt),
        "gt": gt,
    }


def test_step_dir_matches_a_direct_computation(aflw, workdir, capsys):
    data_dir, kept = aflw
    config = _eval_config(data_dir)
    step = workdir / "checkpoints" / "1"
    report = evaluate.evaluate_and_report(config, step)
    printed = capsys.readouterr().out

    assert list(report["checkpoints"]) == ["1"]
    assert report["best"] == "1"
    assert json.loads((step / REPORT).read_text()) == report
    _check_printed_equals_json(printed, report)

    direct = _direct_metrics(step, config)
    np.testing.assert_allclose(direct["gt"], [s["pose"] for s in kept], atol=1e-4)
    metrics = report["checkpoints"]["1"]
    assert metrics["num_images"] == direct["num_images"] == len(kept)
    for name in METRIC_NAMES:
        assert metrics[name] == pytest.approx(direct[name], rel=1e-6), name
    assert report["angle_error"] == metrics["angle_error"] == "plain"


def test_angle_errors_plain_and_wrapped():
    """``evaluate_batches`` with each angle error against a direct computation; wrapped is the
    smallest of |d|, |d + 360|, |d - 360|, |d + 180|, |d - 180| per angle."""
    gt = np.array([[10.0, -20.0, 170.0], [-175.0, 0.0, 30.0], [5.0, 5.0, 5.0]])
    pred = np.array([[12.0, 159.0, -172.0], [178.0, -181.0, 30.5], [0.0, 0.0, 0.0]])
    batches = [
        {"image": pred[:2], "angles": gt[:2], "mask": np.array([True, True])},
        {
            "image": np.vstack([pred[2:], pred[:1]]),
            "angles": gt[2:].repeat(2, 0),
            "mask": np.array([True, False]),
        },
    ]
    d = pred - gt
    candidates = np.abs(np.stack([d, d + 360, d - 360, d + 180, d - 180]))
    # By hand: yaw (2, 7, 5), pitch (1, 1, 5), roll (18, 0.5, 5).
    np.testing.assert_allclose(candidates.min(0), [[2, 1, 18], [7, 1, 0.5], [5, 5, 5]])
    for name, errors in (("plain", np.abs(d)), ("wrapped", candidates.min(0))):
        metrics = evaluate.evaluate_batches(lambda x: x, batches, progress=False, angle_error=name)
        assert metrics["angle_error"] == name and metrics["num_images"] == 3
        per_angle = errors.mean(0)
        for i, angle in enumerate(("yaw", "pitch", "roll")):
            assert metrics[angle] == pytest.approx(per_angle[i], rel=1e-12), (name, angle)
        assert metrics["mean_mae"] == pytest.approx(per_angle.mean(), rel=1e-12)
    with pytest.raises(ValueError, match="angle_error"):
        evaluate.evaluate_batches(lambda x: x, batches, progress=False, angle_error="min")


def test_workdir_sweep_evaluates_every_checkpoint_and_names_the_best(aflw, workdir, capsys):
    report = evaluate.evaluate_and_report(_eval_config(aflw[0]), workdir)
    printed = capsys.readouterr().out

    rows = report["checkpoints"]
    assert list(rows) == ["checkpoints/1", "best/2"]
    assert rows["checkpoints/1"]["mean_mae"] != rows["best/2"]["mean_mae"]
    best = min(rows, key=lambda n: rows[n]["mean_mae"])
    assert report["best"] == best
    assert f"best: {best} (mean MAE {rows[best]['mean_mae']:.3f} deg)" in printed
    assert json.loads((workdir / REPORT).read_text()) == report
    _check_printed_equals_json(printed, report)


def test_cli_prints_and_writes_what_run_returns(aflw, workdir, tmp_path):
    step = workdir / "checkpoints" / "1"
    proc = subprocess.run(
        [
            sys.executable,
            "eval_main.py",
            "--config=configs/eval_aflw2000.py",
            f"--checkpoint={step}",
            f"--output={tmp_path / 'cli.json'}",
            f"--config.data.val_dir={aflw[0]}",
            f"--config.data.image_size={IMAGE_SIZE}",
            f"--config.eval_batch_size={BATCH}",
            "--config.progress=False",
        ],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "cli.json").read_text())
    _check_printed_equals_json(proc.stdout, report)

    here = evaluate.evaluate_and_report(_eval_config(aflw[0]), step, tmp_path / "here.json")
    assert report.keys() == here.keys()
    for name in METRIC_NAMES:
        assert report["checkpoints"]["1"][name] == pytest.approx(
            here["checkpoints"]["1"][name], abs=1e-4
        )


def test_torch_checkpoint_matches_the_torch_network(aflw, torch_file, capsys):
    data_dir, kept = aflw
    config = _eval_config(data_dir)
    report = evaluate.evaluate_and_report(config, torch_file)
    printed = capsys.readouterr().out
    assert json.loads((torch_file.parent / f"7_{REPORT}").read_text()) == report
    assert list(report["checkpoints"]) == ["7.pkl"]
    _check_printed_equals_json(printed, report)

    torch.manual_seed(0)
    reference = build_reference_model("s").eval()
    loader = make_eval_loader(
        data_dir, "test", batch_size=BATCH, mode="aflw2000", target_size=IMAGE_SIZE
    )
    errors = []
    with torch.no_grad():
        for batch in loader:
            images = torch.from_numpy(np.asarray(batch["image"])).permute(0, 3, 1, 2)
            out = reference(images)
            pred = torch.stack([decode_angles(out[i], out[i + 1]) for i in (0, 2, 4)], dim=1)
            errors.append(np.abs(pred.numpy() - batch["angles"])[batch["mask"]])
    per_angle = np.concatenate(errors).mean(axis=0)
    metrics = report["checkpoints"]["7.pkl"]
    assert metrics["num_images"] == len(kept)
    assert [metrics["yaw"], metrics["pitch"], metrics["roll"]] == pytest.approx(per_angle, abs=1e-3)


def test_biwi_mode_and_report_path(tmp_path, workdir):
    generate("biwi", 5, tmp_path / "raw", seed=5, image_size=72)
    convert("biwi", tmp_path / "raw", tmp_path / "data", split="test", progress=False)
    config = _eval_config(tmp_path / "data", "eval_biwi")
    config.data.val_input_size = 70  # resize the shorter side to 70, centre crop 64
    out = tmp_path / "biwi.json"
    report = evaluate.evaluate_and_report(config, workdir / "checkpoints" / "1", output=out)
    assert json.loads(out.read_text()) == report
    assert (report["dataset"], report["val_mode"], report["input_size"]) == ("biwi", "biwi", 70)
    assert report["checkpoints"]["1"]["num_images"] == 5

    config.data.val_mode = "aflw2000"
    with pytest.raises(evaluate.EvalError, match="without a face box"):
        evaluate.evaluate_and_report(config, workdir / "checkpoints" / "1", output=out)


def test_wrong_variant_and_missing_inputs_are_clear_errors(aflw, workdir, torch_file):
    config = _eval_config(aflw[0])
    config.model.variant = "m"
    step = workdir / "checkpoints" / "1"
    with pytest.raises(evaluate.EvalError, match="holds variant 's', not the requested 'm'") as e:
        evaluate.evaluate_and_report(config, step)
    assert str(step) in str(e.value)
    with pytest.raises(evaluate.EvalError, match="it is a checkpoint of variant 's'") as e:
        evaluate.evaluate_and_report(config, torch_file)
    message = str(e.value)
    assert str(torch_file) in message and "--config.model.variant" in message
    assert len(message.splitlines()) <= evaluate.MAX_MESSAGE_LINES + 3  # no wall of keys

    config.model.variant = "s"
    with pytest.raises(evaluate.EvalError, match="does not exist"):
        evaluate.evaluate_and_report(config, workdir / "nothing_here")
    config.data.val_dir = ""
    with pytest.raises(evaluate.EvalError, match=r"set --config\.data\.val_dir"):
        evaluate.evaluate_and_report(config, step)


def test_cli_error_exits_nonzero_with_one_message(aflw, tmp_path):
    missing = tmp_path / "no_such_checkpoint"
    proc = subprocess.run(
        [
            sys.executable,
            "eval_main.py",
            "--config=configs/eval_aflw2000.py",
            f"--checkpoint={missing}",
            f"--config.data.val_dir={aflw[0]}",
        ],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1] == f"error: checkpoint path {missing} does not exist"
    )
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_list_checkpoints(tmp_path):
    def step(path: Path) -> Path:
        (path / "model").mkdir(parents=True)
        return path

    for name in ("12", "1", "checkpoints/100", "best/100"):
        step(tmp_path / name)
    (tmp_path / "5").mkdir()  # no model item: not a checkpoint
    (tmp_path / "3.pkl").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "final.pkl").write_bytes(b"")  # not numbered: not part of the sweep
    found = list_checkpoints(tmp_path)
    assert [name for name, _ in found] == ["1", "3.pkl", "12", "checkpoints/100", "best/100"]
    assert found[1][1] == tmp_path / "3.pkl"

    assert list_checkpoints(tmp_path / "12") == [("12", tmp_path / "12")]
    assert list_checkpoints(tmp_path / "final.pkl") == [("final.pkl", tmp_path / "final.pkl")]
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        list_checkpoints(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_checkpoints(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        list_checkpoints(tmp_path / "5")


def test_report_path(tmp_path):
    (tmp_path / "3.pkl").write_bytes(b"")
    assert evaluate.report_path(tmp_path / "3.pkl", "biwi", "test") == (
        tmp_path / "3_eval_biwi_test.json"
    )
    assert evaluate.report_path(tmp_path, "aflw2000", "test") == tmp_path / REPORT


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_every_config_loads(path):
    config = _root_module(f"configs.{path.stem}").get_config()
    default = _root_module("configs.default").get_config()
    assert isinstance(config, ml_collections.ConfigDict)
    assert set(config.keys()) == set(default.keys())  # the same fields, the same meaning
    assert set(config.data.keys()) == set(default.data.keys())
    assert config.data.val_mode in EVAL_MODES
    assert config.model.variant in ("s", "m", "l")


# The original's README commands: epochs, flips, validation set transform, transfer source.
RECIPES = {
    "dad_pretrain": (50, True, "aflw2000", 224, "pretrained/efficientnetv2_s_21k"),
    "w300lp_scratch": (100, False, "aflw2000", 224, "pretrained/efficientnetv2_s_21k"),
    "w300lp_from_dad": (100, False, "aflw2000", 224, "workdirs/dad_pretrain/best"),
    "biwi_70_30": (100, True, "biwi", 224, "pretrained/efficientnetv2_s_21k"),
    "biwi_from_w300lp": (100, True, "biwi", 224, "workdirs/w300lp_from_dad/best"),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_hold_the_original_settings(name):
    config = _root_module(f"configs.{name}").get_config()
    data = config.data
    epochs, flip, val_mode, val_input_size, init_from = RECIPES[name]
    assert (config.num_epochs, data.flip, data.val_mode) == (epochs, flip, val_mode)
    assert (data.val_input_size, data.image_size, config.init_from) == (
        val_input_size,
        224,
        init_from,
    )
    assert (config.batch_size, config.learning_rate, config.head_lr_multiplier) == (32, 1e-5, 5.0)
    assert (config.lr_schedule, data.augment) == ("constant", 0.5)
    assert config.val_metric == "wrapped"  # the original's best-epoch selection


def test_eval_configs():
    aflw = _root_module("configs.eval_aflw2000").get_config()
    biwi = _root_module("configs.eval_biwi").get_config()
    assert (aflw.data.val_mode, aflw.data.image_size) == ("aflw2000", 224)
    assert (biwi.data.val_mode, biwi.data.val_input_size, biwi.data.image_size) == (
        "biwi",
        240,
        224,
    )


@pytest.mark.parametrize("name", ["w300lp_tpu_slice", "w300lp_gpu_node"])
def test_pod_recipes_scale_batch_and_learning_rate_with_the_device_count(name):
    module = _root_module(f"configs.{name}")
    for devices in (8, 64):
        config = module.get_config(str(devices))
        assert config.batch_size == 32 * devices
        assert config.learning_rate == pytest.approx(1e-5 * (devices**0.5))
        assert (config.lr_schedule, config.model.dtype) == ("cosine", "bfloat16")
        assert 0 < config.warmup_steps <= 1000
        # The rest is the original's 300W-LP recipe.
        assert (config.num_epochs, config.data.flip, config.data.augment) == (100, False, 0.5)
