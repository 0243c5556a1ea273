"""`python -m data_prep.inspect DIR --augment N`: the training loader's samples, drawn, dumped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from records_builder import write_split

from data_prep.inspect import main as inspect_main
from hpe_jax.data.pipeline import make_train_loader
from hpe_jax.data.transforms import normalize

SIZE = 16
NUM = 6


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A dataset of eight records (32x32 random images, a face box), pose (i + 1, -i, 2 i + 1)."""
    out = tmp_path_factory.mktemp("records")
    return write_split(out, "train", [(i + 1.0, -i, 2 * i + 1.0) for i in range(8)], num_shards=1)


def _first_batch(data_dir: Path, **kwargs) -> dict[str, np.ndarray]:
    loader = make_train_loader(
        data_dir,
        "train",
        batch_size=NUM,
        target_size=SIZE,
        worker_count=0,
        shard_index=0,
        shard_count=1,
        **kwargs,
    )
    iterator = iter(loader)
    batch = {k: np.array(v) for k, v in next(iterator).items()}
    iterator.close()
    return batch


def test_dump_and_sheet_are_the_training_samples(data_dir, tmp_path, capsys):
    dump, sheet = tmp_path / "s.npz", tmp_path / "s.png"
    args = [str(data_dir), "--split", "train", "--augment", str(NUM), "--image_size", str(SIZE)]
    assert inspect_main([*args, "--seed", "3", "--dump", str(dump), "--output", str(sheet)]) == 0
    assert f"sheet of {NUM} training samples" in capsys.readouterr().out
    saved = np.load(dump)
    assert saved["images"].shape == (NUM, SIZE, SIZE, 3) and saved["images"].dtype == np.uint8
    assert saved["angles"].shape == (NUM, 3) and saved["angles"].dtype == np.float32
    batch = _first_batch(data_dir, augment=0.5, flip=True, seed=3)
    np.testing.assert_array_equal(normalize(saved["images"]), batch["image"])
    np.testing.assert_array_equal(saved["angles"], batch["angles"])
    assert Image.open(sheet).size == (4 * SIZE, 2 * (SIZE + 30))

    # Flips off and augmentation 1: never a negated yaw; augmentation 0: the plain crops.
    assert inspect_main([*args, "--augment_prob", "1", "--flip", "false", "--dump", str(dump)]) == 0
    assert np.all(np.load(dump)["angles"][:, 0] > 0)
    assert inspect_main([*args, "--augment_prob", "0", "--seed", "5", "--dump", str(dump)]) == 0
    plain = _first_batch(data_dir, augment=0.0, flip=True, seed=5)
    np.testing.assert_array_equal(normalize(np.load(dump)["images"]), plain["image"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--augment", "0", "--dump", "x.npz"], "--augment must be >= 1"),
        (["--augment", "2"], "--output PATH.png and/or --dump"),
        (["--flip", "false"], "--flip only go with --augment"),
        (["--augment", "2", "--augment_prob", "1.5", "--dump", "x.npz"], "--augment_prob"),
        (["--augment", "2", "--flip", "yes", "--dump", "x.npz"], "expected true or false"),
        (["--augment", "2", "--image_size", "0", "--dump", "x.npz"], "--image_size"),
        (["--augment", "2", "--seed", "-1", "--dump", "x.npz"], "--seed"),
    ],
)
def test_bad_flags_fail_in_one_line(data_dir, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        inspect_main([str(data_dir), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_missing_split_fails_in_one_line(data_dir, tmp_path, capsys):
    args = [str(data_dir), "--split", "nope", "--augment", "2", "--dump", str(tmp_path / "x.npz")]
    assert inspect_main(args) == 2
    err = capsys.readouterr().err
    assert "nope" in err and err.count("\n") == 1, err
