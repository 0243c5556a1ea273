"""Synthetic datasets (data_prep.synthetic): real formats, pose conventions, determinism."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy.spatial.transform import Rotation

from data_prep import read_records, synthetic, synthetic_heads
from data_prep.convert import convert
from data_prep.synthetic import dad_matrices, generate
from data_prep.synthetic_heads import render_head
from hpe_jax.pose import geodesic, rotation_from_euler

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
REAL_300W_LP_MAT = SAMPLES / "300W_LP" / "IBUG_image_008_1_0.mat"
REAL_AFLW_MATS = sorted((SAMPLES / "AFLW2000").glob("*.mat"))
SIZE = 96

# Keys, shapes and dtypes of the real files (DATA.md), used when the samples are absent.
SPEC_300W_LP = {
    "Pose_Para": ((1, 7), "float32"),
    "pt2d": ((2, 68), "float64"),
    "Shape_Para": ((199, 1), "float64"),
    "Exp_Para": ((29, 1), "float64"),
    "Tex_Para": ((199, 1), "float64"),
    "Color_Para": ((1, 7), "float32"),
    "Illum_Para": ((1, 10), "float64"),
    "roi": ((1, 4), "int16"),
}
SPEC_AFLW = {**SPEC_300W_LP, "pt2d": ((2, 21), "float64"), "pt3d_68": ((3, 68), "float32")}


def layout_of(mat_path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{key: (shape, dtype name)} of a .mat file's arrays."""
    mat = scipy.io.loadmat(mat_path)
    return {k: (v.shape, v.dtype.name) for k, v in mat.items() if not k.startswith("__")}


def mat_pose(mat: dict) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees of a loaded .mat's Pose_Para (pitch, yaw, roll radians)."""
    pitch, yaw, roll = np.degrees(mat["Pose_Para"][0, :3].astype(np.float64))
    return float(yaw), float(pitch), float(roll)


def dad_pose(r_json: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) of a DAD rotation by DATA.md's formula (the original's code)."""
    a = Rotation.from_matrix(np.asarray(r_json).T).as_euler("xyz", degrees=True)
    pitch = a[0] - 180.0
    pitch = pitch + 360.0 if pitch <= -180.0 else pitch
    return np.array([a[1], pitch, a[2]])


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def fit_rotation(model: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Rotation M minimising |seen - c M model| over centred (3, K) point sets (Procrustes)."""
    a = model - model.mean(1, keepdims=True)
    b = seen - seen.mean(1, keepdims=True)
    u, _, vt = np.linalg.svd(b @ a.T)
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


@pytest.fixture(scope="module")
def w300lp(tmp_path_factory):
    out = tmp_path_factory.mktemp("w300lp")
    return out, generate("300w_lp", 9, out, seed=1, image_size=SIZE)


@pytest.fixture(scope="module")
def aflw(tmp_path_factory):
    out = tmp_path_factory.mktemp("aflw")
    return out, generate("aflw2000", 8, out, seed=2, image_size=SIZE)


@pytest.fixture(scope="module")
def dad(tmp_path_factory):
    out = tmp_path_factory.mktemp("dad")
    return out, generate("dad", 7, out, seed=3, image_size=SIZE)


def test_300w_lp_files_have_the_real_format(w300lp):
    out, samples = w300lp
    expected = layout_of(REAL_300W_LP_MAT) if REAL_300W_LP_MAT.exists() else SPEC_300W_LP
    assert expected == SPEC_300W_LP
    folders = {"AFW", "HELEN", "IBUG", "LFPW", "AFW_Flip", "HELEN_Flip", "IBUG_Flip", "LFPW_Flip"}
    assert {p.name for p in out.iterdir() if p.is_dir()} == folders
    lines = (out / "300wlp_list.txt").read_text().splitlines()
    assert lines == [f"./{s['name']}" for s in samples]
    assert samples[0]["name"] == "AFW/AFW_1051618982_1_0"
    assert samples[4]["name"] == "IBUG/IBUG_image_000_1_0"
    assert samples[6]["name"] == "LFPW/LFPW_image_train_0000_0"
    for s in samples:
        mat_path = out / (s["name"] + ".mat")
        assert layout_of(mat_path) == expected
        mat = scipy.io.loadmat(mat_path)
        assert mat_pose(mat) == s["pose"]
        pt2d = mat["pt2d"]
        assert s["box"] == (*pt2d.min(1), *pt2d.max(1))
        with Image.open(out / s["file"]) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (SIZE, SIZE))


def test_300w_lp_flip_twin_is_the_mirror_with_yaw_and_roll_negated(w300lp):
    out, samples = w300lp
    for orig, twin in zip(samples[0:8:2], samples[1:8:2], strict=True):
        folder, name = orig["name"].split("/")
        assert twin["name"] == f"{folder}_Flip/{name}"
        yaw, pitch, roll = orig["pose"]
        assert twin["pose"] == (-yaw, pitch, -roll)
        a = scipy.io.loadmat(out / (orig["name"] + ".mat"))["pt2d"]
        b = scipy.io.loadmat(out / (twin["name"] + ".mat"))["pt2d"]
        np.testing.assert_allclose(b[0], SIZE - a[0], atol=1e-12)
        np.testing.assert_array_equal(b[1], a[1])
        img_a = np.asarray(Image.open(out / orig["file"]), np.float64)
        img_b = np.asarray(Image.open(out / twin["file"]), np.float64)
        assert np.abs(img_b[:, ::-1] - img_a).mean() < 3.0
    assert samples[8]["name"].startswith("AFW/")  # odd count: the last one has no twin


def test_default_image_size_is_the_real_one(tmp_path):
    for fmt, name in (("300w_lp", "AFW/AFW_1051618982_1_0.jpg"), ("aflw2000", "image00002.jpg")):
        generate(fmt, 1, tmp_path / fmt, seed=0)
        with Image.open(tmp_path / fmt / name) as img:
            assert img.size == (450, 450)


def test_aflw2000_files_have_the_real_format(aflw):
    out, samples = aflw
    zero_exp = {**SPEC_AFLW, "Exp_Para": ((29, 1), "uint8")}  # as the real image00516.mat
    for real in REAL_AFLW_MATS:
        assert layout_of(real) in (SPEC_AFLW, zero_exp)
    names = [f"image{n:05d}" for n in (2, 5, 6, 9, 10, 13, 14, 17)]
    assert [s["name"] for s in samples] == names
    for i, s in enumerate(samples):
        assert layout_of(out / f"{s['name']}.mat") == (zero_exp if i == 6 else SPEC_AFLW)
        mat = scipy.io.loadmat(out / f"{s['name']}.mat")
        assert mat_pose(mat) == s["pose"]
        pt3d = mat["pt3d_68"].astype(np.float64)
        assert s["box"] == (*pt3d[:2].min(1), *pt3d[:2].max(1))
        with Image.open(out / s["file"]) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (SIZE, SIZE))
    # Sample 5 (index % 64 == 5) has pitch or roll beyond 99: written, left out of the list.
    assert [s["kept"] for s in samples] == [i != 5 for i in range(8)]
    assert max(abs(a) for a in samples[5]["pose"][1:]) > 99
    assert (out / "image00013.jpg").exists()
    lines = (out / "aflw2000_list.txt").read_text().splitlines()
    assert lines == [f"./{s['name']}" for s in samples if s["kept"]]


def test_aflw2000_hidden_points_are_stored_as_in_the_real_files(tmp_path):
    samples = generate("aflw2000", 3, tmp_path, seed=4, image_size=SIZE, yaw_range=(70, 80))
    for s in samples:
        pt2d = scipy.io.loadmat(tmp_path / f"{s['name']}.mat")["pt2d"]
        hidden = pt2d[0] == -1.0
        assert np.all(pt2d[1, hidden] == SIZE + 2)
        # Nose to image-left: the image-left ear (AFLW point 13) is hidden, the other is seen.
        assert hidden[12] and not hidden[16]
        assert np.all((pt2d[:, ~hidden] >= 0) & (pt2d[:, ~hidden] <= SIZE))
    for real in REAL_AFLW_MATS:
        pt2d = scipy.io.loadmat(real)["pt2d"]
        assert np.all(pt2d[1, pt2d[0] == -1.0] == 452)  # 450 + 2, what we mimic


def test_biwi_per_image_npz_is_bgr_with_lists(tmp_path):
    samples = generate("biwi", 5, tmp_path, seed=5, image_size=SIZE)
    assert [s["name"] for s in samples] == ["0", "1", "2", "3", "4"]
    assert (tmp_path / "biwi_list.txt").read_text() == "0\n1\n2\n3\n4\n"
    assert (tmp_path / "biwi_train_list.txt").read_text() == "0\n1\n2\n3\n"
    assert (tmp_path / "biwi_test_list.txt").read_text() == "4\n"
    for i, s in enumerate(samples):
        with np.load(tmp_path / f"{i}.npz") as z:
            assert sorted(z.files) == ["image", "pose"]
            image, pose = z["image"], z["pose"]
        assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3)
        assert pose.dtype == np.float32 and pose.shape == (3,)
        assert tuple(pose.astype(float)) == s["pose"] and s["box"] is None
        job = synthetic._Job(i, np.random.default_rng([5, 2, i]), SIZE, tmp_path)
        rgb = synthetic._draw(job, "biwi", synthetic.DEFAULT_RANGES["biwi"], False, tuple)
        np.testing.assert_array_equal(image[:, :, ::-1], rgb.rendered.image)


def test_biwi_split_npz_layout(tmp_path):
    samples = generate("biwi", 5, tmp_path, seed=6, layout="split_npz")
    names = ["BIWI_train[0]", "BIWI_train[1]", "BIWI_train[2]", "BIWI_train[3]", "BIWI_test[0]"]
    assert [s["name"] for s in samples] == names
    for split, n, first in (("train", 4, 0), ("test", 1, 4)):
        with np.load(tmp_path / f"BIWI_{split}.npz") as z:
            assert sorted(z.files) == ["image", "img_size", "pose"]
            assert z["image"].dtype == np.uint8 and z["image"].shape == (n, 64, 64, 3)
            assert z["pose"].dtype == np.float64 and z["pose"].shape == (n, 3)
            assert int(z["img_size"]) == 64
            assert [tuple(p) for p in z["pose"]] == [s["pose"] for s in samples[first:][:n]]


def test_dad_both_layouts(dad):
    out, samples = dad
    pre = json.loads((out / "train.json").read_text())
    official = json.loads((out / "train" / "train.json").read_text())
    assert len(pre) == len(official) == len(samples)
    for s, p, o in zip(samples, pre, official, strict=True):
        assert sorted(p) == ["R", "bbox", "img_path"]
        assert sorted(o) == ["annotation_path", "attributes", "bbox", "img_path", "item_id"]
        assert o["item_id"] == s["item_id"] and p["img_path"] == f"{s['name']}.png"
        assert s["official_name"] == f"images/{s['item_id']}" == o["img_path"][:-4]
        x, y, w, h = p["bbox"]
        assert p["bbox"] == o["bbox"] and s["box"] == (x, y, x + w, y + h)
        annotation = json.loads((out / "train" / o["annotation_path"]).read_text())
        assert sorted(annotation) == ["model_view_matrix", "projection_matrix", "vertices"]
        mv = np.array(annotation["model_view_matrix"])
        proj = np.array(annotation["projection_matrix"])
        np.testing.assert_array_equal((np.diag([1.0, -1, -1, 1]) @ mv)[:3, :3], np.array(p["R"]))
        np.testing.assert_allclose(dad_pose(p["R"]), s["pose"], atol=1e-9)
        # DAD's own projection (its visualize.py): pixel = (P @ MV @ v)[:2] / w, y -> H - y.
        v = np.array(annotation["vertices"])
        assert v.shape == (68, 3)
        projected = (proj @ mv @ np.c_[v, np.ones(68)].T).T
        px, py = projected[:, 0] / projected[:, 3], SIZE - projected[:, 1] / projected[:, 3]
        assert x <= px.min() < x + 1 and x + w - 1 < px.max() <= x + w
        assert y <= py.min() < y + 1 and y + h - 1 < py.max() <= y + h
        with Image.open(out / p["img_path"]) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (SIZE, SIZE))
    assert [s["kept"] for s in samples] == [i != 5 for i in range(7)]


def test_dad_single_layouts(tmp_path):
    pre = generate("dad", 2, tmp_path / "p", seed=3, image_size=32, layout="preprocessed")
    assert not (tmp_path / "p" / "train" / "annotations").exists()
    assert pre[0]["name"] == f"train/images/{pre[0]['item_id']}"
    off = generate("dad", 2, tmp_path / "o", seed=3, image_size=32, layout="official", split="val")
    assert not (tmp_path / "o" / "val.json").exists()
    assert (tmp_path / "o" / "val" / "val.json").exists()
    assert off[0]["name"] == f"images/{off[0]['item_id']}"


def test_dad_rotation_inverts_the_data_md_conversion():
    rng = np.random.default_rng(0)
    poses = np.c_[
        rng.uniform(-89.9, 89.9, 500), rng.uniform(-179, 179, 500), rng.uniform(-179, 179, 500)
    ]
    poses = np.r_[poses, [[0, 0, 0], [30, 0, 0], [0, 110, 0], [0, -120, 45], [-89.5, 10, -10]]]
    for pose in poses:
        r_json, mv = dad_matrices(tuple(pose))
        np.testing.assert_allclose(dad_pose(r_json), pose, atol=1e-4 * 1e-3)
        np.testing.assert_array_equal(r_json, np.diag([1.0, -1, -1]) @ mv)
        np.testing.assert_allclose(mv, rotation_from_euler(pose).T, atol=1e-15)
    np.testing.assert_allclose(dad_matrices((0.0, 0.0, 0.0))[0], np.diag([1.0, -1, -1]))


def render(pose, seed=0, size=128):
    return render_head(np.random.default_rng(seed), pose, size, 0.3 * size, (size / 2, size / 2))


def test_sign_conventions_on_rendered_landmarks():
    nose, left_eye, right_eye = 30, 36, 45  # iBUG: 36 image-left eye corner, 45 image-right
    frontal = render((0.0, 0.0, 0.0)).points
    assert frontal[left_eye, 0] < 64 < frontal[right_eye, 0]
    assert abs(frontal[nose, 0] - 64) < 1e-9
    # Positive yaw turns the nose to image-left.
    assert render((30.0, 0.0, 0.0)).points[nose, 0] < 64 - 10
    assert render((-30.0, 0.0, 0.0)).points[nose, 0] > 64 + 10
    # Positive pitch looks up: the nose tip rises in the image (v down) relative to the eyes.
    for pitch, sign in ((30.0, -1), (-30.0, 1)):
        p = render((0.0, pitch, 0.0)).points
        rise = (p[nose, 1] - p[[left_eye, right_eye], 1].mean()) - (
            frontal[nose, 1] - frontal[[left_eye, right_eye], 1].mean()
        )
        assert sign * rise > 3
    # Positive roll lowers the eye on the image-right side.
    p = render((0.0, 0.0, 20.0)).points
    assert p[right_eye, 1] > p[left_eye, 1] + 10
    p = render((0.0, 0.0, -20.0)).points
    assert p[left_eye, 1] > p[right_eye, 1] + 10


def test_projection_is_r_transpose_in_y_up_coordinates():
    for pose in ((25.0, -10.0, 40.0), (-70.0, 35.0, -15.0)):
        r = render(pose)
        seen = np.stack([r.points[:, 0], -r.points[:, 1], r.points[:, 2]])
        fitted = fit_rotation(r.model_points.T, seen)
        assert geodesic(fitted, rotation_from_euler(np.array(pose)).T) < 1e-6


@pytest.mark.skipif(not REAL_AFLW_MATS, reason=f"{SAMPLES} not found")
def test_landmark_model_matches_the_real_aflw2000_convention():
    """Our 68-point model, rotated as the generator rotates it, fits the real pt3d_68."""
    model = render((0.0, 0.0, 0.0), seed=1).model_points[:68].T
    for path in REAL_AFLW_MATS:
        mat = scipy.io.loadmat(path)
        pt3d = mat["pt3d_68"].astype(np.float64)
        seen = np.stack([pt3d[0], -pt3d[1], pt3d[2]])
        rot = rotation_from_euler(np.array(mat_pose(mat)))
        assert geodesic(fit_rotation(model, seen), rot.T) < 8.0, path.name


def test_same_seed_same_files_and_samples_independent_of_count(tmp_path):
    generate("aflw2000", 3, tmp_path / "a", seed=7, image_size=48)
    generate("aflw2000", 3, tmp_path / "b", seed=7, image_size=48)
    generate("aflw2000", 2, tmp_path / "c", seed=7, image_size=48)
    generate("aflw2000", 3, tmp_path / "d", seed=8, image_size=48)
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    c, d = file_hashes(tmp_path / "c"), file_hashes(tmp_path / "d")
    assert a == b
    assert all(a[k] == v for k, v in c.items() if k.endswith((".jpg", ".mat")))
    assert a["image00002.jpg"] != d["image00002.jpg"]


def test_formats_with_the_same_seed_share_no_sample(tmp_path):
    a = generate("300w_lp", 1, tmp_path / "a", seed=0, image_size=32)
    b = generate("aflw2000", 1, tmp_path / "b", seed=0, image_size=32)
    assert a[0]["pose"] != b[0]["pose"]


def test_pose_is_visible_not_mirror_ambiguous():
    plus, minus = render((40.0, 10.0, 0.0), seed=3), render((-40.0, 10.0, 0.0), seed=3)
    diff = np.abs(plus.image.astype(int) - minus.image.astype(int)).max(-1)
    assert (diff > 40).mean() > 0.05
    assert plus.points[30, 0] < 64 < minus.points[30, 0]
    # The head itself is asymmetric: on a plain background, the mirror of the +40 view is not
    # the -40 view (a symmetric head would make them identical).
    head = synthetic_heads._sample_head(np.random.default_rng(3))
    plain = np.full((128, 128, 3), 0.5, np.float32)
    views = []
    for yaw in (40.0, -40.0):
        view = synthetic_heads._View(
            rotation_from_euler(np.array([yaw, 10.0, 0.0])).T, 38.4, 64, 64, 128
        )
        views.append(
            synthetic_heads._render_parts(head.parts, view, np.array([0, 0, 1.0]), 0.4, plain)[0]
        )
    mirror_diff = np.abs(views[0][:, ::-1] - views[1]).max(-1)
    assert (mirror_diff > 0.15).mean() > 0.01


def test_command_line(tmp_path, capsys):
    synthetic.main(["--format", "biwi", "--num", "2", "--out", str(tmp_path), "--seed", "1",
                    "--image_size", "32", "--layout", "split_npz"])  # fmt: skip
    assert "wrote 2 biwi samples" in capsys.readouterr().out
    with np.load(tmp_path / "BIWI_train.npz") as z:
        assert z["image"].shape == (1, 32, 32, 3)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        generate("aflw", 1, tmp_path, seed=0)
    with pytest.raises(ValueError, match=r"unknown option\(s\) for aflw2000: \['layout'\]"):
        generate("aflw2000", 1, tmp_path, seed=0, layout="per_image")
    with pytest.raises(ValueError, match="biwi layout must be one of"):
        generate("biwi", 1, tmp_path, seed=0, layout="aggregated")
    with pytest.raises(ValueError, match="num must be >= 1"):
        generate("dad", 0, tmp_path, seed=0)


def converted(dataset: str, data_dir: Path, out: Path, filename_list: Path | None = None):
    """{name: record} of ``data_dir`` run through the converter and read back."""
    meta = convert(
        dataset,
        data_dir,
        out,
        filename_list=filename_list,
        split="train",
        workers=1,
        progress=False,
    )
    records = {r["name"]: r for r in read_records(out, "train")}
    assert meta["num_records"] == len(records)
    return records


def assert_round_trip(records: dict, samples: list[dict]) -> None:
    """Every sample came back once, with its name, pose (1e-4 degrees) and box."""
    assert sorted(records) == sorted(s["name"] for s in samples)
    for s in samples:
        rec = records[s["name"]]
        np.testing.assert_allclose(rec["pose"], s["pose"], atol=1e-4, rtol=0, err_msg=s["name"])
        if s["box"] is None:
            assert rec["box"] is None
        else:
            np.testing.assert_allclose(rec["box"], s["box"], atol=1e-4, rtol=0, err_msg=s["name"])


def test_round_trip_300w_lp(w300lp, tmp_path):
    data, samples = w300lp
    assert_round_trip(converted("300w_lp", data, tmp_path / "a", data / "300wlp_list.txt"), samples)
    records = converted("300w_lp", data, tmp_path / "b")
    assert_round_trip(records, samples)
    rec = records[samples[0]["name"]]
    assert rec["image_bytes"] == (data / samples[0]["file"]).read_bytes()


def test_round_trip_aflw2000_keeps_the_99_degree_subset(aflw, tmp_path):
    data, samples = aflw
    kept = [s for s in samples if s["kept"]]
    assert len(kept) == len(samples) - 1
    assert_round_trip(converted("aflw2000", data, tmp_path / "a"), kept)
    assert_round_trip(converted("aflw2000", data, tmp_path / "b", data / "aflw2000_list.txt"), kept)


def test_round_trip_biwi_per_image(tmp_path):
    data = tmp_path / "data"
    samples = generate("biwi", 5, data, seed=9, image_size=48)
    records = converted("biwi", data, tmp_path / "a", data / "biwi_list.txt")
    assert_round_trip(records, samples)
    assert_round_trip(converted("biwi", data, tmp_path / "b"), samples)
    with np.load(data / "3.npz") as z:
        np.testing.assert_array_equal(records["3"]["image"], z["image"][:, :, ::-1])


def test_round_trip_biwi_split_npz(tmp_path):
    data = tmp_path / "data"
    samples = generate("biwi", 5, data, seed=9, image_size=48, layout="split_npz")
    for split in ("train", "test"):
        records = converted("biwi", data, tmp_path / split, data / f"BIWI_{split}.npz")
        assert_round_trip(records, [s for s in samples if s["split"] == split])
    with np.load(data / "BIWI_test.npz") as z:
        np.testing.assert_array_equal(records["BIWI_test[0]"]["image"], z["image"][0, :, :, ::-1])


def test_round_trip_dad_both_layouts(dad, tmp_path):
    data, samples = dad
    kept = [s for s in samples if s["kept"]]
    assert len(kept) == len(samples) - 1
    assert_round_trip(converted("dad", data, tmp_path / "pre"), kept)
    official = converted("dad", data / "train", tmp_path / "official")
    assert_round_trip(official, [{**s, "name": s["official_name"]} for s in kept])
    rec = official[kept[0]["official_name"]]
    assert rec["image_bytes"] == (data / kept[0]["file"]).read_bytes()
