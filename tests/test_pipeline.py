"""Tests of the grain input pipelines and their crop / augmentation ops (tiny images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from records_builder import write_split

from hpe_jax.data import pipeline, transforms
from hpe_jax.data.loaders import GlobalBatches, data_sharding

SIZE = 16  # output side
EDGE_POSES = [(-100.0, -99.5, -0.01), (0.0, 79.99, 99.9)]
# MODEL.md: coarse = floor((a + 100) / 20), shift = trunc(a - (-100 + 20 * coarse)), by hand:
# -100 -> (0, 0), -99.5 -> (0, 0), -0.01 -> (4, 19), 0 -> (5, 0), 79.99 -> (8, 19), 99.9 -> (9, 19)
EDGE_COARSE = [[0, 0, 4], [5, 8, 9]]
EDGE_SHIFT = [[0, 0, 19], [0, 19, 19]]


def _index_poses(n: int) -> list[tuple[float, float, float]]:
    """Pose of record i: yaw = i (identifies the record, also after a flip), pitch = -i / 2."""
    return [(float(i), -i / 2, 0.25 * i) for i in range(n)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Dataset test_records/box (splits train, test, edge); test_records/no_box beside it."""
    out = tmp_path_factory.mktemp("records")
    write_split(out, "train", _index_poses(10))
    write_split(out, "test", _index_poses(7), num_shards=3)
    write_split(out, "facecrops", _index_poses(3), num_shards=1, box=None)
    return write_split(out, "edge", EDGE_POSES, num_shards=1)


@pytest.fixture(scope="module")
def facecrops(data_dir) -> Path:
    return data_dir.parents[1] / "no_box"


def _train(data_dir: Path, **overrides):
    kwargs = dict(
        batch_size=3,
        target_size=SIZE,
        augment=0.5,
        flip=True,
        seed=7,
        worker_count=0,
        shard_index=0,
        shard_count=1,
    )
    kwargs.update(overrides)
    return pipeline.make_train_loader(data_dir, "train", **kwargs)


def _take(iterator, n: int) -> list[dict[str, np.ndarray]]:
    return [{k: np.array(v) for k, v in next(iterator).items()} for _ in range(n)]


def _assert_batches_equal(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_loose_box_sequential_rule():
    # w0 = 100: x_min = 100 - 0.6*0.25*100 = 85; h0 = 200: y_min = 100 - 2*0.25*200 = 0;
    # width now 200 - 85 = 115: x_max = 200 + 0.15*115 = 217.25;
    # height now 300 - 0 = 300: y_max = 300 + 0.15*300 = 345.
    np.testing.assert_allclose(
        transforms.loose_box((100, 100, 200, 300), 0.25),
        [85.0, 0.0, 217.25, 345.0],
        rtol=0,
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="x_max > x_min"):
        transforms.loose_box((10, 0, 10, 5), 0.2)


def test_crop_truncates_and_fills_black_outside():
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    pil = Image.fromarray(image)
    # int() truncation toward zero: (2.9, 1.2, 6.99, 5.5) -> (2, 1, 6, 5), a 4x4 crop (no resize).
    inside = np.asarray(transforms.crop_resize(pil, (2.9, 1.2, 6.99, 5.5), 4))
    np.testing.assert_array_equal(inside, image[1:5, 2:6])
    # (-3.7, 0.9, 4.2, 7.5) -> (-3, 0, 4, 7): three black columns, then columns 0..3 of the image.
    edge = np.asarray(transforms.crop_resize(pil, (-3.7, 0.9, 4.2, 7.5), 7))
    np.testing.assert_array_equal(edge[:, :3], 0)
    np.testing.assert_array_equal(edge[:, 3:], image[:7, :4])


def test_resize_center_crop_resizes_to_a_square_first():
    columns = np.tile(np.arange(8, dtype=np.uint8)[None, :, None] * 30, (8, 1, 3))
    out = transforms.resize_center_crop(Image.fromarray(columns), 8, 4)  # 8x8: no resize
    np.testing.assert_array_equal(np.asarray(out), columns[2:6, 2:6])
    wide = Image.fromarray(np.zeros((4, 12, 3), np.uint8))
    assert transforms.resize_center_crop(wide, 6, 4).size == (4, 4)
    with pytest.raises(ValueError, match="crop_size"):
        transforms.resize_center_crop(Image.fromarray(columns), 4, 5)


def test_edge_angle_labels_through_both_loaders(data_dir):
    (batch,) = list(
        pipeline.make_eval_loader(
            data_dir,
            "edge",
            batch_size=2,
            mode="aflw2000",
            target_size=SIZE,
            shard_index=0,
            shard_count=1,
        )
    )
    np.testing.assert_array_equal(batch["coarse"], EDGE_COARSE)
    np.testing.assert_array_equal(batch["shift"], EDGE_SHIFT)
    np.testing.assert_array_equal(batch["angles"], np.asarray(EDGE_POSES, np.float32))
    assert batch["coarse"].dtype == np.int32 and batch["shift"].dtype == np.int32
    train = pipeline.make_train_loader(
        data_dir,
        "edge",
        batch_size=2,
        target_size=SIZE,
        augment=0.0,
        flip=True,
        seed=0,
        worker_count=0,
        num_epochs=1,
        shard_index=0,
        shard_count=1,
    )
    (tbatch,) = list(train)
    order = np.argsort(tbatch["angles"][:, 0])  # the train stream is shuffled
    np.testing.assert_array_equal(tbatch["coarse"][order], EDGE_COARSE)
    np.testing.assert_array_equal(tbatch["shift"][order], EDGE_SHIFT)


def test_train_batch_format_and_augmented_labels(data_dir):
    it = iter(_train(data_dir, augment=1.0))
    for batch in _take(it, 4):
        assert batch["image"].shape == (3, SIZE, SIZE, 3) and batch["image"].dtype == np.float32
        assert batch["angles"].dtype == np.float32 and set(batch) == {
            "image",
            "coarse",
            "shift",
            "angles",
        }
        yaw, pitch, roll = batch["angles"].T
        index = np.abs(yaw)  # record i has pose (i, -i/2, i/4); a flip negates yaw and roll only
        np.testing.assert_array_equal(pitch, -index / 2)
        np.testing.assert_array_equal(roll, np.sign(yaw) * index / 4)
        coarse = np.floor((batch["angles"] + 100) / 20)
        np.testing.assert_array_equal(batch["coarse"], coarse)
        np.testing.assert_array_equal(batch["shift"], np.trunc(batch["angles"] + 100 - 20 * coarse))


def test_train_is_deterministic_given_seed(data_dir):
    a = _take(iter(_train(data_dir)), 5)
    b = _take(iter(_train(data_dir)), 5)
    _assert_batches_equal(a, b)
    c = _take(iter(_train(data_dir, seed=8)), 5)
    assert not np.array_equal(a[0]["image"], c[0]["image"])


@pytest.mark.parametrize("worker_count", [0, 1])
def test_restored_iterator_continues_exactly(data_dir, worker_count):
    loader = _train(data_dir, worker_count=worker_count)
    sharding = data_sharding()
    it = GlobalBatches(iter(loader), sharding)
    _take(it, 3)
    state = it.get_state()  # JSON bytes, as a checkpoint stores them
    expected = _take(it, 4)  # crosses the 10-record epoch boundary; workers prefetch ahead
    it.close()
    restored = GlobalBatches(iter(loader), sharding)
    restored.set_state(state)
    _assert_batches_equal(_take(restored, 4), expected)
    restored.close()
    # A worker process computes exactly what the main process computes.
    _assert_batches_equal(_take(iter(_train(data_dir, worker_count=0)), 7)[3:], expected)


def test_sharding_partitions_the_training_stream(data_dir):
    seen = []
    for index in range(2):
        loader = _train(
            data_dir, batch_size=1, num_epochs=1, augment=0.0, shard_index=index, shard_count=2
        )
        seen.append([int(b["angles"][0, 0]) for b in loader])
    assert len(seen[0]) == len(seen[1]) == 5
    assert sorted(seen[0] + seen[1]) == list(range(10))


def test_eval_yields_every_record_once_with_mask(data_dir):
    per_process = []
    for index in range(2):
        loader = pipeline.make_eval_loader(
            data_dir,
            "test",
            batch_size=3,
            mode="aflw2000",
            target_size=SIZE,
            shard_index=index,
            shard_count=2,
        )
        per_process.append(list(loader))
    assert len(per_process[0]) == len(per_process[1]) == 2  # 8 padded records, 4 per process
    names = []
    for batches in per_process:
        for batch in batches:
            assert batch["image"].shape == (3, SIZE, SIZE, 3) and batch["mask"].shape == (3,)
            names += batch["angles"][batch["mask"], 0].astype(int).tolist()
            np.testing.assert_array_equal(batch["image"][~batch["mask"]], 0)
    assert sorted(names) == list(range(7))
    assert sum(int(b["mask"].sum()) for batches in per_process for b in batches) == 7


def test_eval_biwi_mode_and_errors(data_dir, facecrops):
    batches = list(
        pipeline.make_eval_loader(
            facecrops,
            "facecrops",
            batch_size=2,
            mode="biwi",
            target_size=SIZE,
            input_size=20,
            shard_index=0,
            shard_count=1,
        )
    )
    np.testing.assert_array_equal(
        np.concatenate([b["mask"] for b in batches]), [True] * 3 + [False]
    )
    assert batches[0]["image"].shape == (2, SIZE, SIZE, 3)
    no_box = pipeline.make_eval_loader(
        facecrops,
        "facecrops",
        batch_size=2,
        mode="aflw2000",
        target_size=SIZE,
        shard_index=0,
        shard_count=1,
    )
    with pytest.raises(ValueError, match=r"record '0'.*no face box"):
        list(no_box)
    with pytest.raises(ValueError, match="mode"):
        pipeline.make_eval_loader(data_dir, "test", batch_size=2, mode="x", target_size=SIZE)


def test_out_of_range_pose_names_the_record(tmp_path):
    bad = write_split(tmp_path, "bad", [(0.0, 0.0, 0.0), (120.0, 0.0, 0.0)], num_shards=1)
    loader = pipeline.make_eval_loader(
        bad,
        "bad",
        batch_size=2,
        mode="aflw2000",
        target_size=SIZE,
        shard_index=0,
        shard_count=1,
    )
    with pytest.raises(ValueError, match="record '1'"):
        list(loader)


def test_missing_dataset_or_split_and_ambiguous_data_dir(data_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFDS dataset there"):
        _train(tmp_path)
    with pytest.raises(ValueError, match=r"has no split 'nope' \(splits: edge, test, train\)"):
        pipeline.make_eval_loader(data_dir, "nope", batch_size=1, mode="biwi", target_size=SIZE)
    data_root = data_dir.parents[2]  # a data dir with test_records/box and test_records/no_box
    with pytest.raises(ValueError, match="holds several datasets"):
        _train(data_root)
    # The dataset folder and the data dir of a single dataset name it too.
    assert len(list(_train(data_dir.parent, num_epochs=1))) == 3
    assert len(list(_train(data_root / "test_records" / "box", num_epochs=1))) == 3
