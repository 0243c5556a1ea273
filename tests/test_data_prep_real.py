"""Converters on the real AFLW2000-3D and 300W-LP sample files (skipped when absent)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from data_prep import read_records
from data_prep.convert import convert
from data_prep.inspect import main as inspect_main
from hpe_jax.pose import rotation_from_euler

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
AFLW = SAMPLES / "AFLW2000"
LP_NAME = "IBUG_image_008_1_0"

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} not found")


def mat_pose(mat_path: Path) -> np.ndarray:
    """(yaw, pitch, roll) degrees straight from Pose_Para (pitch, yaw, roll radians)."""
    para = scipy.io.loadmat(mat_path)["Pose_Para"]
    return np.degrees(para[0, [1, 0, 2]].astype(np.float64)).astype(np.float32)


@pytest.fixture(scope="module")
def aflw_dir(tmp_path_factory) -> Path:
    """The 16 AFLW2000 samples copied into a flat AFLW2000 folder, as the real set is laid out."""
    folder = tmp_path_factory.mktemp("data") / "AFLW2000"
    shutil.copytree(AFLW, folder)
    return folder


@pytest.fixture(scope="module")
def aflw_out(aflw_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out")
    meta = convert("aflw2000", aflw_dir, out, split="test", progress=False)
    return out, meta


def test_aflw2000_poses_boxes_landmarks_images(aflw_dir, aflw_out):
    out, meta = aflw_out
    records = list(read_records(out, "test"))
    stems = sorted(p.stem for p in AFLW.glob("*.jpg"))
    assert [r["name"] for r in records] == stems
    assert meta["num_records"] == 16 and meta["num_filtered"] == 0 and meta["num_skipped"] == 0
    assert meta["max_abs_angle"] == 99.0
    for rec in records:
        mat = scipy.io.loadmat(aflw_dir / f"{rec['name']}.mat")
        pt3d = mat["pt3d_68"]
        np.testing.assert_array_equal(rec["pose"], mat_pose(aflw_dir / f"{rec['name']}.mat"))
        expected_box = [pt3d[0].min(), pt3d[1].min(), pt3d[0].max(), pt3d[1].max()]
        np.testing.assert_array_equal(rec["box"], np.array(expected_box, np.float32))
        np.testing.assert_array_equal(rec["landmarks"], pt3d)
        np.testing.assert_allclose(
            rec["rotation"], rotation_from_euler(rec["pose"].astype(np.float64)), atol=1e-6
        )
        jpg = aflw_dir / f"{rec['name']}.jpg"
        assert rec["image_format"] == "jpeg" and rec["image_bytes"] == jpg.read_bytes()
        np.testing.assert_array_equal(rec["image"], np.asarray(Image.open(jpg).convert("RGB")))
    poses = np.stack([r["pose"] for r in records])
    assert meta["angle_ranges"]["pitch"] == [float(poses[:, 1].min()), float(poses[:, 1].max())]


def test_tfds_opens_the_converted_aflw2000_with_its_real_poses(aflw_dir, aflw_out):
    """TFDS itself (no hpe-jax code, no TensorFlow) reads what the converter wrote."""
    out, meta = aflw_out
    builder = tfds.builder_from_directory(str(out / "aflw2000" / "1.0.0"))
    assert builder.name == "aflw2000" and builder.info.splits["test"].num_examples == 16
    assert "AFLW2000-3D" in builder.info.description and "Zhu" in builder.info.citation
    assert builder.info.metadata["test"]["num_skipped"] == 0
    source = builder.as_data_source("test")
    for example in (source[i] for i in range(len(source))):
        name = example["name"].decode()
        np.testing.assert_array_equal(example["pose"], mat_pose(aflw_dir / f"{name}.mat"))
        image = np.asarray(Image.open(aflw_dir / f"{name}.jpg").convert("RGB"))
        np.testing.assert_array_equal(example["image"], image)  # decoded by TFDS
    assert meta["dataset_dir"] == str(out / "aflw2000" / "1.0.0")


def test_aflw2000_angle_filter_counts_and_lists(aflw_dir, tmp_path):
    meta = convert("aflw2000", aflw_dir, tmp_path, max_abs_angle=60.0, progress=False)
    poses = {p.stem: mat_pose(p) for p in AFLW.glob("*.mat")}
    dropped = sorted(n for n, p in poses.items() if np.abs(p).max() > 60.0)
    assert dropped == ["image00475", "image02420"]  # yaw 65.6 and 70.9
    assert [f["name"] for f in meta["filtered"]] == dropped and meta["num_filtered"] == 2
    assert meta["num_records"] == 14
    assert sorted(r["name"] for r in read_records(tmp_path, "train")) == sorted(
        set(poses) - set(dropped)
    )
    off = convert(
        "aflw2000", aflw_dir, tmp_path, split="unfiltered", max_abs_angle=None, progress=False
    )
    assert off["num_records"] == 16 and off["num_filtered"] == 0


def test_aflw2000_filename_list_order_and_two_workers(aflw_dir, aflw_out, tmp_path):
    names = ["image04331", "image00050", "image02545", "image00430", "image01322"]
    listing = tmp_path / "aflw2000_list.txt"
    listing.write_text("".join(f"./{n}\n" for n in names))
    meta = convert(
        "aflw2000",
        aflw_dir,
        tmp_path / "out",
        filename_list=listing,
        workers=2,
        num_shards=2,
        progress=False,
    )
    assert meta["num_shards"] == 2 and sum(meta["records_per_shard"]) == 5
    assert len(list((tmp_path / "out" / "aflw2000" / "1.0.0").glob("*.array_record-*"))) == 2
    got = list(read_records(tmp_path / "out", "train", with_image=False))
    assert [r["name"] for r in got] == names
    by_name = {r["name"]: r for r in read_records(aflw_out[0], "test", with_image=False)}
    for rec in got:
        assert rec["image_bytes"] == by_name[rec["name"]]["image_bytes"]
        np.testing.assert_array_equal(rec["pose"], by_name[rec["name"]]["pose"])


def test_300w_lp_real_sample(tmp_path):
    data = tmp_path / "300W_LP"
    (data / "IBUG").mkdir(parents=True)
    for ext in (".jpg", ".mat"):
        shutil.copy(SAMPLES / "300W_LP" / (LP_NAME + ext), data / "IBUG")
    meta = convert("300w_lp", data, tmp_path / "out", progress=False)
    assert meta["num_records"] == 1 and meta["max_abs_angle"] is None
    (rec,) = read_records(tmp_path / "out", "train")
    mat = scipy.io.loadmat(data / "IBUG" / f"{LP_NAME}.mat")
    assert rec["name"] == f"IBUG/{LP_NAME}"
    np.testing.assert_array_equal(rec["pose"], mat_pose(data / "IBUG" / f"{LP_NAME}.mat"))
    np.testing.assert_allclose(rec["pose"], [-44.008648, -7.583607, 3.2076364], atol=1e-5)
    pt2d = mat["pt2d"]
    box = np.array([pt2d[0].min(), pt2d[1].min(), pt2d[0].max(), pt2d[1].max()], np.float32)
    np.testing.assert_array_equal(rec["box"], box)
    np.testing.assert_array_equal(rec["landmarks"], pt2d.astype(np.float32))
    assert rec["image_bytes"] == (data / "IBUG" / f"{LP_NAME}.jpg").read_bytes()
    assert rec["image"].shape == (450, 450, 3) and rec["image"].dtype == np.uint8


def test_inspect_prints_and_draws_contact_sheet(aflw_out, tmp_path, capsys):
    out, _ = aflw_out
    sheet = tmp_path / "sheet.png"
    args = [str(out), "--split", "test", "--num", "6", "--columns", "3", "--cell", "100"]
    assert inspect_main([*args, "--contact_sheet", str(sheet)]) == 0
    printed = capsys.readouterr().out
    assert '"dataset": "aflw2000"' in printed and "image00050: pose (yaw, pitch, roll)" in printed
    image = np.asarray(Image.open(sheet).convert("RGB"))
    assert image.shape == (2 * 130, 3 * 100, 3)
    pure = {
        colour: np.all(image == colour, axis=-1).sum()
        for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    }
    assert all(count > 20 for count in pure.values()), pure
    assert inspect_main([str(out), "--split", "nope"]) == 2
    assert "has no split 'nope' (splits: test)" in capsys.readouterr().err
