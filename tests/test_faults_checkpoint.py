"""Damaged, foreign and non-finite checkpoints (issue 17): every case ends in one error line
naming the checkpoint and the array or file, a resume from the newest intact step, or an eval
report of the good checkpoints; nothing that is not a checkpoint is deleted."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import grain
import jax
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx
from records_builder import write_split
from train_support import standard_config

import hpe_jax
from hpe_jax import checkpoint, convert_torch, evaluate
from hpe_jax.convert_torch import load_torch_state_dict, torch_entries
from hpe_jax.convert_torch import main as convert_torch_main
from hpe_jax.errors import UserError
from hpe_jax.pretrained import load_tf_backbone_npy, tf_entries
from hpe_jax.train_state import create_train_state

# tensorstore's message for an unreadable array names its key: 'Error reading "a.b.kernel/0.0"'.
ARRAY_NAMED = r'Error reading "[\w.]+/[\d.]+" in OCDBT database'


def _one_error_line(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def _data_files(step_dir: Path, item: str) -> list[Path]:
    """The ocdbt data files of ``item`` (under ``.../d/``), smallest first."""
    files = [p for p in (step_dir / item).rglob("*") if p.is_file() and p.parent.name == "d"]
    return sorted(files, key=lambda p: p.stat().st_size)


def _flip_head(path: Path, count: int = 4096) -> None:
    """Inverts the first ``count`` bytes of ``path`` (the start of its compressed data)."""
    data = bytearray(path.read_bytes())
    data[:count] = bytes(b ^ 0xFF for b in data[:count])
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


class Tiny(nnx.Module):
    """A network with a parameter and BN statistics big enough (> 1 KiB) for ocdbt data files."""

    def __init__(self, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.dense = nnx.Linear(32, 64, rngs=rngs)
        self.bn = nnx.BatchNorm(64, rngs=rngs)


TINY_CONFIG = ml_collections.ConfigDict({"variant": "tiny"})


@pytest.fixture(scope="module")
def small_model():
    return hpe_jax.init_model("s", seed=0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, small_model) -> Path:
    """A checkpoint of the small network, to be copied before damaging it."""
    out = tmp_path_factory.mktemp("saved") / "ckpt"
    return checkpoint.save_model(out, small_model, hpe_jax.get_config("s"))


def test_damaged_data_file_is_refused_naming_the_array(saved, tmp_path):
    step = tmp_path / "ckpt"
    shutil.copytree(saved, step)
    _flip_head(_data_files(step, checkpoint.MODEL_ITEM)[-1])  # 4 KiB of the biggest data file
    with pytest.raises(
        UserError, match=rf"checkpoint {step}: item 'model' is damaged: [A-Z_]+: {ARRAY_NAMED}"
    ):
        hpe_jax.load_model(step)


def test_damaged_meta_is_refused_naming_the_checkpoint(tmp_path):
    step = checkpoint.save_model(tmp_path / "ckpt", Tiny(), TINY_CONFIG)
    (step / checkpoint.META_ITEM / "metadata").write_text("{not json")
    with pytest.raises(UserError, match=rf"checkpoint {step}: item 'meta' cannot be read"):
        hpe_jax.load_model(step)


def test_overwrite_never_deletes_what_is_not_a_checkpoint(tmp_path, capsys):
    out = checkpoint.save_model(tmp_path / "out", Tiny(), TINY_CONFIG)
    (out / "notes.txt").write_text("mine")
    args = ["--checkpoint", str(tmp_path / "7.pkl"), "--output", str(out), "--overwrite"]
    assert convert_torch_main(args) == 2
    assert "not a checkpoint (notes.txt)" in _one_error_line(capsys)
    with pytest.raises(UserError, match=r"not a checkpoint \(notes\.txt\); not replaced"):
        checkpoint.save_model(out, Tiny(seed=1), TINY_CONFIG)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()  # a checkpoint alone is replaced
    checkpoint.save_model(out, Tiny(seed=1), TINY_CONFIG)
    restored = Tiny(seed=2)
    checkpoint.restore_model_state(out, restored)
    np.testing.assert_array_equal(restored.dense.kernel[...], Tiny(seed=1).dense.kernel[...])


def _iterator(position: int) -> grain.DatasetIterator:
    iterator = iter(grain.MapDataset.range(16).to_iter_dataset())
    for _ in range(position):
        next(iterator)
    return iterator


def _digest_changed(step_dir: Path, item: str) -> None:
    """Rewrites the ``meta`` item of ``step_dir`` with one digest of ``item`` changed."""
    path = step_dir / checkpoint.META_ITEM / "metadata"
    meta = json.loads(path.read_text())
    digests = meta[checkpoint.DIGESTS_KEY][item]
    first = next(iter(digests))
    digests[first] = "0" * len(digests[first])
    path.write_text(json.dumps(meta))


def test_resume_falls_back_past_damaged_steps_with_one_line_warnings(tmp_path, caplog):
    directory = tmp_path / "checkpoints"
    leftover = directory / "9.orbax-checkpoint-tmp-1733"  # an interrupted save's temp folder
    (leftover / checkpoint.MODEL_ITEM).mkdir(parents=True)
    tx = optax.adam(1e-3)
    state = create_train_state(Tiny(), tx, 0)
    manager = checkpoint.make_manager(directory, 5)
    assert not leftover.exists()
    for step in (1, 2, 3):
        params = jax.tree.map(lambda v, s=step: v * (s + 1), state.params)  # other weights per step
        moved = state.replace(step=np.int32(step), params=params)
        checkpoint.save_train_state(
            manager, moved, TINY_CONFIG, epoch=step, iterator=_iterator(step)
        )
    manager.wait_until_finished()
    for path in _data_files(directory / "3", checkpoint.OPT_ITEM):
        _truncate(path)
    _digest_changed(directory / "2", checkpoint.OPT_ITEM)

    iterator = _iterator(0)
    with caplog.at_level(logging.WARNING):
        restored, epoch = checkpoint.restore_train_state(manager, state, iterator)
    assert (int(restored.step), epoch, next(iterator)) == (1, 1, 1)
    pairs = zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params), strict=True)
    for got, fresh in pairs:
        np.testing.assert_array_equal(got, fresh * 2)  # step 1's weights
    skipped = [r.getMessage() for r in caplog.records if "cannot resume" in r.getMessage()]
    assert len(skipped) == 2 and all("\n" not in m for m in skipped)
    assert f"checkpoint {directory / '3'}: its data is damaged" in skipped[0]
    assert "opt_state" in skipped[0] and "Error reading" in skipped[0]
    assert f"checkpoint {directory / '2'}: array opt_state" in skipped[1]
    assert all("tensorstore_spec" not in m for m in skipped)  # no kilobytes of JSON specs

    # The damaged steps are kept aside, no longer steps: the resumed run saves step 2 anew
    # (orbax skips a save of a step not newer than its latest) and a later resume takes it.
    assert manager.all_steps() == [1]
    assert (directory / "2.damaged").is_dir() and (directory / "3.damaged").is_dir()
    assert f"kept as {directory / '2.damaged'}, {directory / '3.damaged'}" in caplog.text
    moved = restored.replace(step=np.int32(2))
    checkpoint.save_train_state(manager, moved, TINY_CONFIG, epoch=2, iterator=_iterator(2))
    manager.wait_until_finished()
    again, epoch = checkpoint.restore_train_state(manager, state, _iterator(0))
    assert (int(again.step), epoch) == (2, 2)

    for step in ("1", "2"):
        _flip_head(_data_files(directory / step, checkpoint.MODEL_ITEM)[-1])
    with pytest.raises(UserError, match=rf"no checkpoint in {directory} can be resumed"):
        checkpoint.restore_train_state(manager, state, _iterator(0))
    assert manager.all_steps() == [1, 2]  # nothing set aside when no step is intact
    manager.close()


def test_eval_sweep_reports_damaged_steps_and_writes_the_rest(tmp_path, saved, monkeypatch, capsys):
    pytest.importorskip("torch")
    write_split(tmp_path / "data", "test", [(1.0, 2.0, 3.0)] * 2)
    wd = tmp_path / "wd"
    shutil.copytree(saved, wd / "checkpoints" / "1")
    shutil.copytree(saved, wd / "checkpoints" / "2")
    _truncate(_data_files(wd / "checkpoints" / "2", checkpoint.MODEL_ITEM)[-1])
    (wd / "3.pkl").write_bytes(b"")  # an empty PyTorch checkpoint of the original
    metrics = {"yaw": 1.0, "pitch": 2.0, "roll": 3.0, "mean_mae": 2.0, "maev": 1.0}
    metrics |= {"geodesic": 1.0, "num_images": 2, "angle_error": "plain"}
    monkeypatch.setattr(evaluate, "evaluate_network", lambda *a, **k: dict(metrics))
    config = standard_config("", data__val_dir=str(tmp_path / "data"), progress=False)
    out = tmp_path / "report.json"
    with pytest.raises(evaluate.EvalError, match=r"2 of 3 checkpoints could not be evaluated"):
        evaluate.evaluate_and_report(config, wd, out)
    report = json.loads(out.read_text())
    assert list(report["checkpoints"]) == ["checkpoints/1"]
    assert report["best"] == "checkpoints/1"
    assert "is damaged" in report["failed"]["checkpoints/2"]
    assert "3.pkl: not a readable PyTorch checkpoint" in report["failed"]["3.pkl"]
    printed = capsys.readouterr().out
    assert "checkpoints/2" in printed and "3.pkl" in printed
    assert all("\n" not in why for why in report["failed"].values())


def test_non_finite_torch_weight_is_refused_naming_file_and_key(tmp_path, small_model, capsys):
    torch = pytest.importorskip("torch")
    key, variable, _ = next(e for e in torch_entries(small_model) if e[0].endswith(".bias"))
    weight = torch.zeros(variable.shape)
    weight[0] = float("inf")
    path = tmp_path / "7.pkl"
    torch.save({"epoch": 6, "model": {key: weight}}, path)
    assert convert_torch_main(["--checkpoint", str(path), "--output", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys)
    assert str(path) in line and f"{key}: 1 of" in line and "NaN or Inf" in line
    assert not (tmp_path / "o").exists()


def test_non_finite_backbone_weight_is_refused_with_its_name(small_model):
    name, variable, _ = tf_entries(small_model)[1]  # the stem's BN gamma
    before = np.asarray(variable[...]).copy()
    weights = {name: np.full(variable.shape, np.nan, np.float32)}
    with pytest.raises(UserError, match=rf"NaN or Inf values: {name}$"):
        load_tf_backbone_npy(small_model, weights, strict=False)
    np.testing.assert_array_equal(variable[...], before)


def test_torch_values_of_the_wrong_kind_are_named(small_model, monkeypatch):
    # Keys are missing here: skip the guess of their variant (it traces three networks).
    monkeypatch.setattr(convert_torch, "_guess_variant", lambda keys: None)
    conv_key, conv, _ = next(e for e in torch_entries(small_model) if e[0].endswith("0.weight"))
    bias_key = next(e[0] for e in torch_entries(small_model) if e[0].endswith(".bias"))
    before = np.asarray(conv[...]).copy()
    state_dict = {conv_key: np.zeros(3, np.float32), bias_key: np.array("not a tensor")}
    with pytest.raises(UserError) as caught:
        load_torch_state_dict(small_model, state_dict)
    assert f"wrong shape: {conv_key}: checkpoint (3,), network expects" in str(caught.value)
    assert f"wrong shape: {bias_key}: checkpoint holds <U12, not a numeric" in str(caught.value)
    np.testing.assert_array_equal(conv[...], before)
