"""`python -m data_prep.inspect DIR --augment N`: the training loader's samples, drawn, dumped."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.inspect import main as inspect_main
from data_prep.writer import ShardSetWriter
from hpe_jax.data.pipeline import make_train_loader
from hpe_jax.data.records import encode_record
from hpe_jax.data.transforms import normalize

SIZE = 16
NUM = 6


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Eight records of 40x40 random images, box (8, 8, 32, 32), pose (i + 1, -i, 2 i + 1)."""
    out = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    with ShardSetWriter(out, "train", 1) as writer:
        for i in range(8):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "PNG")
            record = encode_record(
                dataset="test",
                name=str(i),
                image_bytes=buf.getvalue(),
                image_format="png",
                pose=np.array([i + 1.0, -i, 2 * i + 1.0]),
                rotation=np.eye(3),
                box=np.array([8.0, 8.0, 32.0, 32.0]),
                landmarks=None,
            )
            writer.write(0, record)
        writer.commit({"dataset": "test", "split": "train"})
    return out


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
    assert inspect_main(args) == 1
    err = capsys.readouterr().err
    assert "no finished conversion of split 'nope'" in err and err.count("\n") == 1
