"""Converters on small hand-made files in the real formats; bad inputs; interrupted runs."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy.spatial.transform import Rotation

import data_prep.w300lp
from data_prep import read_records
from data_prep.common import ConversionError
from data_prep.convert import STAGING_LABELS, convert, main
from data_prep.dad import wrap_degrees
from data_prep.inspect import axis_endpoints
from data_prep.publish import stale_staging
from hpe_jax.folder_lock import LOCK_FILE
from hpe_jax.pose import rotation_from_euler

REPO = Path(__file__).resolve().parents[1]


def rgb_image(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def write_jpg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb_image(seed)).save(path, format="JPEG", quality=90)


def write_300wlp(root: Path, rel: str, pose_deg, seed: int = 0, drop: str = "") -> np.ndarray:
    """NAME.jpg + NAME.mat with the real keys and dtypes; returns the pt2d (2, 68) written."""
    write_jpg(root / f"{rel}.jpg", seed)
    yaw, pitch, roll = pose_deg
    rng = np.random.default_rng(seed)
    pt2d = rng.uniform(2.0, 22.0, (2, 68))
    mat = {
        "Pose_Para": np.array(
            [[*np.radians([pitch, yaw, roll]), 10.0, 5.0, 0.0, 1e-3]], np.float32
        ),
        "pt2d": pt2d,
        "Shape_Para": rng.normal(size=(199, 1)),
        "Exp_Para": rng.normal(size=(29, 1)),
        "Tex_Para": rng.normal(size=(199, 1)),
        "Color_Para": np.ones((1, 7), np.float32),
        "Illum_Para": np.ones((1, 10)),
        "roi": np.array([[-3, 0, 30, 30]], np.int16),
    }
    mat.pop(drop, None)
    scipy.io.savemat(root / f"{rel}.mat", mat)
    return pt2d


def expected_pose(pose_deg) -> np.ndarray:
    """What the converter must read back: float32 radians (as stored) -> float32 degrees."""
    yaw, pitch, roll = np.radians(pose_deg).astype(np.float32)
    return np.degrees(np.array([yaw, pitch, roll], np.float64)).astype(np.float32)


def records(out: Path, split: str = "train") -> list[dict]:
    return list(read_records(out, split))


# --- 300W-LP (hand-made) -----------------------------------------------------------------


def test_300w_lp_scans_the_eight_folders_and_reads_lists(tmp_path):
    data = tmp_path / "300W_LP"
    files = {
        "LFPW_Flip/LFPW_image_train_0838_5": (-30.0, 10.0, 5.0),
        "AFW/AFW_1_0": (12.5, -8.0, 3.0),
        "IBUG/IBUG_image_008_1_0": (0.0, 0.0, 0.0),
    }
    pts = {
        rel: write_300wlp(data, rel, pose, seed=i) for i, (rel, pose) in enumerate(files.items())
    }
    write_jpg(data / "landmarks" / "not_a_sample.jpg", 9)  # a folder outside the eight
    convert("300w_lp", data, tmp_path / "out", progress=False)
    got = records(tmp_path / "out")
    assert [r["name"] for r in got] == [
        "AFW/AFW_1_0",
        "IBUG/IBUG_image_008_1_0",
        "LFPW_Flip/LFPW_image_train_0838_5",
    ]
    for rec in got:
        np.testing.assert_array_equal(rec["pose"], expected_pose(files[rec["name"]]))
        p = pts[rec["name"]]
        np.testing.assert_array_equal(
            rec["box"], np.array([p[0].min(), p[1].min(), p[0].max(), p[1].max()], np.float32)
        )
    listing = tmp_path / "300wlp_list.txt"
    listing.write_text("./LFPW_Flip/LFPW_image_train_0838_5\n\n./AFW/AFW_1_0\n")
    convert("300w_lp", data, tmp_path / "out2", filename_list=listing, progress=False)
    assert [r["name"] for r in records(tmp_path / "out2")] == [
        "LFPW_Flip/LFPW_image_train_0838_5",
        "AFW/AFW_1_0",
    ]


# --- BIWI ----------------------------------------------------------------------------------


def test_biwi_per_image_npz_bgr_to_rgb(tmp_path):
    data = tmp_path / "biwi"
    data.mkdir()
    bgr = {i: rgb_image(i, size=10) for i in (0, 1, 2, 10)}
    poses = {i: np.array([5.0 * i, -2.5, 1.25 + i], np.float32) for i in bgr}
    for i in bgr:
        np.savez(data / f"{i}.npz", image=bgr[i], pose=poses[i])
    convert("biwi", data, tmp_path / "out", progress=False)
    got = records(tmp_path / "out")
    assert [r["name"] for r in got] == ["0", "1", "2", "10"]  # numeric order
    for rec in got:
        i = int(rec["name"])
        np.testing.assert_array_equal(rec["image"], bgr[i][..., ::-1])
        np.testing.assert_array_equal(rec["pose"], poses[i])
        assert rec["box"] is None and rec["landmarks"] is None and rec["image_format"] == "png"
    listing = tmp_path / "biwi_test_list.txt"
    listing.write_text("10\n1\n")
    convert("biwi", data, tmp_path / "out", split="test", filename_list=listing, progress=False)
    assert [r["name"] for r in records(tmp_path / "out", "test")] == ["10", "1"]


def test_biwi_aggregated_split_npz(tmp_path):
    data = tmp_path / "biwi"
    data.mkdir()
    images = np.stack([rgb_image(i, size=8) for i in range(5)])
    poses = np.arange(15, dtype=np.float64).reshape(5, 3) - 7.0
    np.savez(data / "BIWI_test.npz", image=images, pose=poses, img_size=8)
    convert("biwi", data, tmp_path / "out", split="test", workers=2, progress=False)
    got = records(tmp_path / "out", "test")
    assert [r["name"] for r in got] == [f"BIWI_test[{i}]" for i in range(5)]
    for i, rec in enumerate(got):
        np.testing.assert_array_equal(rec["image"], images[i][..., ::-1])
        np.testing.assert_array_equal(rec["pose"], poses[i].astype(np.float32))
    # FSA-Net keeps its split files side by side: a scan refuses to merge them.
    np.savez(data / "BIWI_train.npz", image=images[:2], pose=poses[:2], img_size=8)
    with pytest.raises(ConversionError, match=r"several aggregated BIWI files \['BIWI_test', "):
        convert("biwi", data, tmp_path / "out2", progress=False)
    convert("biwi", data, tmp_path / "out2", filename_list=data / "BIWI_train.npz", progress=False)
    assert [r["name"] for r in records(tmp_path / "out2")] == ["BIWI_train[0]", "BIWI_train[1]"]
    (tmp_path / "list.txt").write_text("BIWI_train\n")
    convert("biwi", data, tmp_path / "out3", filename_list=tmp_path / "list.txt", progress=False)
    assert len(records(tmp_path / "out3")) == 2


def test_biwi_aggregated_with_mismatched_pose_is_reported(tmp_path):
    data = tmp_path / "biwi"
    data.mkdir()
    np.savez(data / "BIWI_train.npz", image=np.zeros((4, 8, 8, 3), np.uint8), pose=np.zeros((4, 2)))
    np.savez(data / "0.npz", image=rgb_image(0, 8), pose=np.zeros(3))
    with pytest.raises(ConversionError, match=r"BIWI_train\.npz: pose: expected shape \(4, 3\)"):
        convert("biwi", data, tmp_path / "out", progress=False)
    meta = convert("biwi", data, tmp_path / "out", on_error="skip", progress=False)
    assert meta["num_records"] == 1 and meta["num_skipped"] == 1
    assert meta["skipped"][0]["name"] == "BIWI_train"
    assert "all records of this file skipped" in meta["skipped"][0]["reason"]


# --- DAD-3DHeads ----------------------------------------------------------------------------


def dad_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The R of the preprocessed json whose original-formula angles are (yaw, pitch, roll)."""
    return Rotation.from_euler("xyz", [pitch + 180.0, yaw, roll], degrees=True).as_matrix().T


DAD_POSES = {"a": (30.0, -20.0, 10.0), "b": (-45.0, 60.0, -5.0), "c": (0.0, 0.0, 0.0)}
DAD_BOXES = {"a": [2, 3, 10, 12], "b": [0.5, 1.5, 20, 18], "c": [4, 4, 8, 8]}


def write_dad_images(data: Path) -> None:
    for i, item in enumerate(["a", "b", "c", "far"]):
        path = data / "images" / f"{item}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb_image(i)).save(path)


def check_dad(out: Path, split: str = "train") -> None:
    got = {r["name"]: r for r in records(out, split)}
    assert sorted(got) == ["images/a", "images/b", "images/c"]
    for item, pose in DAD_POSES.items():
        rec = got[f"images/{item}"]
        np.testing.assert_allclose(rec["pose"], pose, atol=1e-4)
        x, y, w, h = DAD_BOXES[item]
        np.testing.assert_array_equal(rec["box"], np.array([x, y, x + w, y + h], np.float32))
        np.testing.assert_allclose(
            rec["rotation"], rotation_from_euler(rec["pose"].astype(np.float64)), atol=1e-6
        )
        assert rec["image_format"] == "png" and rec["landmarks"] is None


def test_dad_preprocessed_json(tmp_path):
    data = tmp_path / "dad"
    write_dad_images(data)
    entries = [
        {"img_path": f"images/{k}.png", "bbox": DAD_BOXES[k], "R": dad_rotation(*p).tolist()}
        for k, p in DAD_POSES.items()
    ]
    entries.append(
        {"img_path": "images/far.png", "bbox": [0, 0, 5, 5], "R": dad_rotation(10, 120, 0).tolist()}
    )
    listing = tmp_path / "train.json"
    listing.write_text(json.dumps(entries))
    meta = convert("dad", data, tmp_path / "out", filename_list=listing, progress=False)
    check_dad(tmp_path / "out")
    assert meta["num_filtered"] == 1 and meta["filtered"][0]["name"] == "images/far"
    assert "|angle| > 99" in meta["filtered"][0]["reason"]
    # A frontal face is R = diag(1, -1, -1) in this convention, not the identity.
    frontal = entries[2]["R"]
    np.testing.assert_allclose(frontal, np.diag([1.0, -1.0, -1.0]), atol=1e-12)


def test_dad_official_release_layout(tmp_path):
    data = tmp_path / "dad"
    write_dad_images(data)
    entries = []
    for k, pose in DAD_POSES.items():
        mvm = np.eye(4)
        # diag(1, -1, -1, 1) is its own inverse; the scale must be removed by the SVD step.
        mvm[:3, :3] = 2.5 * np.diag([1.0, -1.0, -1.0]) @ dad_rotation(*pose)
        mvm[:3, 3] = [0.1, -0.2, -3.0]
        (data / "annotations").mkdir(exist_ok=True)
        (data / "annotations" / f"{k}.json").write_text(
            json.dumps({"vertices": [[0, 0, 0]], "model_view_matrix": mvm.tolist()})
        )
        entry = {"item_id": k, "img_path": f"images/{k}.png", "bbox": DAD_BOXES[k]}
        if k != "c":  # without annotation_path the converter uses annotations/<item_id>.json
            entry["annotation_path"] = f"annotations/{k}.json"
        entries.append({**entry, "attributes": {"quality": "hq"}})
    (data / "val.json").write_text(json.dumps(entries))
    convert("dad", data, tmp_path / "out", split="val", progress=False)
    got = records(tmp_path / "out", "val")
    assert [r["name"] for r in got] == ["images/a", "images/b", "images/c"]
    np.testing.assert_allclose(got[2]["pose"], [0.0, 0.0, 0.0], atol=1e-6)  # identity MVM
    check_dad(tmp_path / "out", "val")


@pytest.mark.parametrize("bad_path", ["../outside.png", "/tmp/abs.png", "images/../../x.png"])
def test_dad_entry_escaping_the_data_dir(tmp_path, bad_path):
    data = tmp_path / "dad"
    write_dad_images(data)
    (tmp_path / "outside.png").write_bytes((data / "images" / "a.png").read_bytes())
    entries = [
        {"img_path": "images/a.png", "bbox": [1, 1, 5, 5], "R": dad_rotation(0, 0, 0).tolist()},
        {"img_path": bad_path, "bbox": [1, 1, 5, 5], "R": dad_rotation(0, 0, 0).tolist()},
    ]
    (data / "train.json").write_text(json.dumps(entries))
    with pytest.raises(ConversionError, match=r"train\.json: entry 1 .*escapes the data dir"):
        convert("dad", data, tmp_path / "out", progress=False)
    assert os.listdir(tmp_path / "out") == []  # no dataset, no staging folder left
    meta = convert("dad", data, tmp_path / "out", on_error="skip", progress=False)
    assert meta["num_records"] == 1 and meta["num_skipped"] == 1
    (skipped,) = meta["skipped"]
    assert "entry 1" in skipped["path"] and bad_path in skipped["reason"]


def test_wrap_degrees_interval():
    assert [wrap_degrees(a) for a in (-360.0, -180.0, -10.0, 0.0, 180.0, 190.0)] == [
        0.0,
        180.0,
        -10.0,
        0.0,
        180.0,
        -170.0,
    ]


# --- bad inputs ------------------------------------------------------------------------------


def truncate_jpg(root: Path, rel: str) -> None:
    path = root / f"{rel}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # headers intact: PIL verify() alone passes


def drop_pose_para(root: Path, rel: str) -> None:
    write_300wlp(root, rel, (1.0, 2.0, 3.0), seed=5, drop="Pose_Para")


def nan_pose(root: Path, rel: str) -> None:
    write_300wlp(root, rel, (float("nan"), 2.0, 3.0), seed=5)


def short_pose_para(root: Path, rel: str) -> None:
    mat = {k: v for k, v in scipy.io.loadmat(root / f"{rel}.mat").items() if k[0] != "_"}
    mat["Pose_Para"] = mat["Pose_Para"][:, :3]
    scipy.io.savemat(root / f"{rel}.mat", mat)


BAD_INPUTS = {
    "truncated_jpg": (truncate_jpg, r"IBUG_image_2\.jpg: image does not decode \(OSError"),
    "no_pose_para": (drop_pose_para, r"IBUG_image_2\.mat: missing key\(s\) \['Pose_Para'\]"),
    "nan_pose": (nan_pose, r"IBUG_image_2\.mat: Pose_Para: contains NaN"),
    "wrong_shape": (short_pose_para, r"IBUG_image_2\.mat: Pose_Para: expected shape \(1, 7\)"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_fails_or_is_skipped_and_listed(tmp_path, kind):
    spoil, message = BAD_INPUTS[kind]
    data = tmp_path / "300W_LP"
    for i in range(4):
        write_300wlp(data, f"IBUG/IBUG_image_{i}", (i, -i, 0.5 * i), seed=i)
    spoil(data, "IBUG/IBUG_image_2")
    with pytest.raises(ConversionError, match=message):
        convert("300w_lp", data, tmp_path / "out", progress=False)
    assert os.listdir(tmp_path / "out") == []
    meta = convert("300w_lp", data, tmp_path / "out", on_error="skip", progress=False)
    assert meta["num_records"] == 3 and meta["num_skipped"] == 1
    (skipped,) = meta["skipped"]
    assert skipped["name"] == "IBUG/IBUG_image_2"
    assert re.search(message, f"{skipped['path']}: {skipped['reason']}")
    on_disk = json.loads((tmp_path / "out" / "w300lp" / "1.0.0" / "metadata.json").read_text())
    assert on_disk["train"]["skipped"] == meta["skipped"]
    assert [r["name"] for r in records(tmp_path / "out")] == [
        "IBUG/IBUG_image_0",
        "IBUG/IBUG_image_1",
        "IBUG/IBUG_image_3",
    ]


def test_cli_exit_status_and_messages(tmp_path, capsys):
    data = tmp_path / "300W_LP"
    for i in range(2):
        write_300wlp(data, f"AFW/AFW_{i}", (i, 0, 0), seed=i)
    truncate_jpg(data, "AFW/AFW_1")
    base = ["--dataset", "300w_lp", "--data_dir", str(data), "--output_dir", str(tmp_path / "o")]
    assert main([*base, "--workers", "1", "--no_progress"]) == 2
    assert "AFW_1.jpg: image does not decode" in capsys.readouterr().err
    assert main([*base, "--workers", "1", "--no_progress", "--on_error", "skip"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 records" in printed and "skipped 1 bad sample" in printed


# --- interrupted runs, re-runs, added splits --------------------------------------------------


def failing_load(monkeypatch, at: int) -> None:
    """Makes the 300W-LP reader raise OSError (not a bad sample: the run stops) at call ``at``."""
    real = data_prep.w300lp.load_sample
    calls = [0]

    def load(data_dir, item):
        calls[0] += 1
        if calls[0] == at:
            raise OSError("disk gone (simulated)")
        return real(data_dir, item)

    monkeypatch.setattr(data_prep.w300lp, "load_sample", load)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_failed_run_changes_nothing_and_a_split_is_added_not_replaced(tmp_path, monkeypatch):
    data = tmp_path / "300W_LP"
    for i in range(6):
        write_300wlp(data, f"HELEN/HELEN_{i}", (i, 0, 0), seed=i)
    listing = tmp_path / "first_four.txt"
    listing.write_text("".join(f"HELEN/HELEN_{i}\n" for i in range(4)))
    out = tmp_path / "out"
    convert("300w_lp", data, out, filename_list=listing, num_shards=2, progress=False)
    before = tree(out)
    with monkeypatch.context() as patch:
        failing_load(patch, at=3)
        with pytest.raises(OSError, match="simulated"):
            convert("300w_lp", data, out, split="more", num_shards=3, progress=False)
    # The dataset is untouched, and no staging folder is left.
    assert tree(out) == before and os.listdir(out) == ["w300lp"]
    meta = convert("300w_lp", data, out, split="more", num_shards=3, progress=False)
    assert meta["num_records"] == 6 and meta["records_per_shard"] == [2, 2, 2]
    assert len(records(out)) == 4 and len(records(out, "more")) == 6
    info = json.loads((out / "w300lp" / "1.0.0" / "dataset_info.json").read_text())
    assert [(s["name"], s["shardLengths"]) for s in info["splits"]] == [
        ("train", ["2", "2"]),
        ("more", ["2", "2", "2"]),
    ]
    # A split the dataset holds is refused, whatever the input, and nothing is written.
    before = tree(out)
    with pytest.raises(ConversionError, match=r"already holds split 'train' \(4 records\)"):
        convert("300w_lp", data, out, progress=False)
    assert tree(out) == before


KILL_SCRIPT = """
import os, signal, sys
import data_prep.w300lp as reader
real = reader.load_sample
count = [0]
def load(data_dir, item):
    count[0] += 1
    if count[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(data_dir, item)
reader.load_sample = load
from data_prep.convert import convert
convert("300w_lp", sys.argv[1], sys.argv[2], num_shards=2, progress=False)
"""


def test_killed_run_then_rerun(tmp_path):
    data = tmp_path / "300W_LP"
    for i in range(5):
        write_300wlp(data, f"LFPW/LFPW_{i}", (i, 0, 0), seed=i)
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    script = textwrap.dedent(KILL_SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(data), str(out)], cwd=REPO, env=env, check=False
    )
    assert proc.returncode == -9
    (stale,) = stale_staging(out, STAGING_LABELS)  # the half-written split, hidden
    assert sorted(os.listdir(out)) == sorted([stale.name, LOCK_FILE])
    with pytest.raises(FileNotFoundError, match="no TFDS dataset there"):
        records(out)
    meta = convert("300w_lp", data, out, num_shards=2, progress=False)
    assert meta["records_per_shard"] == [2, 3]  # TFDS's split of 5 records into 2 files
    assert os.listdir(out) == ["w300lp"]  # the leftovers are gone
    assert [r["name"] for r in records(out)] == [f"LFPW/LFPW_{i}" for i in range(5)]


def test_cli_refuses_an_existing_split_in_one_line(tmp_path, capsys):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (1, 2, 3), seed=0)
    args = ["--dataset", "300w_lp", "--data_dir", str(data), "--output_dir", str(tmp_path / "o")]
    assert main([*args, "--no_progress", "--workers", "1"]) == 0
    assert f"to {tmp_path / 'o' / 'w300lp' / '1.0.0'}" in capsys.readouterr().out
    assert main([*args, "--no_progress", "--workers", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"error: {tmp_path / 'o' / 'w300lp' / '1.0.0'} already holds split 'train' (1 records); "
        "not replaced: choose another --split or --output_dir, pass --overwrite to replace "
        "that split, or delete that dataset first"
    )


def test_bad_split_name_and_missing_data_dir(tmp_path):
    for bad in ("../x", "all", "a-b"):
        with pytest.raises(ValueError, match="split name"):
            convert("biwi", tmp_path, tmp_path / "out", split=bad, progress=False)
    with pytest.raises(ValueError, match="num_shards must be >= 1"):
        convert("biwi", tmp_path, tmp_path / "out", num_shards=0, progress=False)
    with pytest.raises(ConversionError, match="data dir not found"):
        convert("biwi", tmp_path / "nope", tmp_path / "out", progress=False)


def test_axis_endpoints_hopenet_directions():
    x_end, y_end, z_end = axis_endpoints(0.0, 0.0, 0.0, 50.0, 50.0, 10.0)
    np.testing.assert_allclose([x_end, y_end, z_end], [[60, 50], [50, 60], [50, 50]], atol=1e-9)
    _, _, z_yaw = axis_endpoints(30.0, 0.0, 0.0, 50.0, 50.0, 10.0)
    assert z_yaw[0] < 50.0  # positive yaw: nose to image-left
    _, _, z_pitch = axis_endpoints(0.0, 30.0, 0.0, 50.0, 50.0, 10.0)
    assert z_pitch[1] < 50.0  # positive pitch: looks up
