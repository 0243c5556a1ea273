"""Predicting poses from photos and videos: ``hpe_jax.Predictor``, ``draw_pose``, face detection
and ``python -m hpe_jax.predict``.

The network is randomly initialised at 64 x 64, of the test-only variant ``tiny``
(``tiny_network``): its weights and depth do not matter here, as the tests check crops, batching,
boxes, files and errors against independent references. Every network call uses batch 2, so one
program is compiled for the whole file.
"""

import importlib.util
import json

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SHARED_DIR
from flax import nnx
from PIL import Image
from tiny_network import tiny_checkpoint

import hpe_jax
from hpe_jax import predict
from hpe_jax.data import transforms
from hpe_jax.detect import BOX_CALIBRATION, calibrate_box, read_model
from hpe_jax.draw import AXIS_COLOURS, draw_pose, project
from hpe_jax.errors import UserError
from hpe_jax.media import Input, list_inputs

SIZE = 64
BATCH = 2
HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
needs_mediapipe = pytest.mark.skipif(not HAS_MEDIAPIPE, reason="needs the 'predict' extra")
AFLW = SHARED_DIR / "samples" / "AFLW2000"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    with tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "1", SIZE) as path:
        yield path


@pytest.fixture(scope="module")
def network(checkpoint):
    return hpe_jax.load_model(checkpoint)


@pytest.fixture(scope="module")
def predictor(checkpoint):
    """From the checkpoint, as the command line loads it: both share one compiled program."""
    predictor = hpe_jax.Predictor(checkpoint, batch_size=BATCH, detect=False)
    assert predictor.input_size == SIZE  # from the checkpoint's model config
    return predictor


def _reference(network, crops: list[np.ndarray]) -> np.ndarray:
    """(N, 3) degrees of uint8 crops through the network under a plain ``jax.jit``."""
    graphdef, state = nnx.split(network)
    forward = jax.jit(lambda x: hpe_jax.decode_angles(nnx.merge(graphdef, state)(x)))
    return np.asarray(forward(jnp.asarray(np.stack([transforms.normalize(c) for c in crops]))))


def _loose_crop(image: np.ndarray, box) -> np.ndarray:
    """The evaluation crop of AFLW2000 records (hpe_jax.data.pipeline.EvalTransform)."""
    loose = transforms.loose_box(box, transforms.EVAL_K)
    return np.asarray(transforms.crop_resize(Image.fromarray(image), loose, SIZE))


def _run(capsys, *argv) -> tuple[int, str]:
    code = predict.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_predict_many_batches_across_images_in_order(network, predictor):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (80, 96, 3), np.uint8) for _ in range(4)]
    boxes = [[[10, 12, 50, 60], [40, 5, 90, 70]], [], [[0, 0, 96, 80]], [[-5, 20, 30, 85]]]
    results = list(predictor.predict_many(images, boxes))
    # detect=False without boxes: each image is one face crop, resized whole.
    whole = list(predictor.predict_many(images[:2]))
    assert [len(r) for r in results] == [2, 0, 1, 1] and [len(r) for r in whole] == [1, 1]
    assert results[0][1].box == (40.0, 5.0, 90.0, 70.0) and results[0][1].score is None
    assert whole[0][0].box == (0.0, 0.0, 96.0, 80.0)
    crops = [_loose_crop(im, b) for im, bs in zip(images, boxes, strict=True) for b in bs]
    crops += [np.asarray(transforms.resize(Image.fromarray(im), SIZE)) for im in images[:2]]
    got = np.array([[f.yaw, f.pitch, f.roll] for r in results + whole for f in r])
    np.testing.assert_allclose(got, _reference(network, crops), atol=1e-3)


def test_predictor_rejects_bad_boxes(predictor):
    with pytest.raises(UserError, match="x_max > x_min"):
        predictor.predict(np.zeros((32, 32, 3), np.uint8), boxes=[[10, 10, 5, 20]])


def test_axes_follow_the_rendered_head():
    """``project`` against the synthetic renderer, whose projection was checked against the
    real AFLW2000 landmarks (data_prep.synthetic_heads)."""
    from data_prep.synthetic_heads import render_head

    pose, scale = (35.0, -20.0, 15.0), 20.0
    head = render_head(np.random.default_rng(0), pose, 48, scale, (24.0, 24.0))
    offsets = scale * project(pose, head.model_points - head.model_points[0])
    np.testing.assert_allclose(offsets, head.points[:, :2] - head.points[0, :2], atol=1e-6)


@pytest.mark.parametrize(
    ("pose", "axis", "direction"),
    [
        ((40, 0, 0), 2, (-1, 0)),  # +yaw: the nose (blue) to image-left
        ((0, 40, 0), 2, (0, -1)),  # +pitch: looks up
        ((0, 0, 30), 0, (1, 1)),  # +roll: the image-right side (red x axis) lowered
        ((0, 0, 0), 1, (0, 1)),  # green toward the chin
    ],
)
def test_draw_pose_axis_directions(pose, axis, direction):
    image = np.zeros((200, 200, 3), np.uint8)
    face = {"box": [50, 50, 150, 150], "yaw": pose[0], "pitch": pose[1], "roll": pose[2]}
    out = draw_pose(image, face, label=False)
    assert not image.any() and out.shape == image.shape and out.dtype == np.uint8
    ys, xs = np.nonzero(np.all(out == AXIS_COLOURS[axis], axis=-1))
    assert len(xs) > 10
    tip = np.array([xs.mean() - 100, ys.mean() - 100])
    for t, d in zip(tip, direction, strict=True):
        assert (t > 5) if d > 0 else (t < -5) if d < 0 else abs(t) < 3


def test_draw_pose_cube_and_label_add_pixels():
    image = np.full((120, 160, 3), 40, np.uint8)
    face = hpe_jax.Face((40.0, 20.0, 120.0, 100.0), 0.9, 20.0, -10.0, 5.0)
    plain = draw_pose(image, face, label=False)
    assert (draw_pose(image, face, cube=True, label=False) != plain).any()
    assert (draw_pose(image, face) != plain).any()


def test_calibrate_box_moves_each_edge_by_its_fraction():
    np.testing.assert_allclose(
        calibrate_box([100, 100, 200, 300]),
        np.array([100, 100, 200, 300]) + np.array(BOX_CALIBRATION) * [100, 200, 100, 200],
    )


def test_vendored_model_checksum(tmp_path):
    assert len(read_model()) == 229_714
    altered = tmp_path / "model.tflite"
    data = read_model()
    altered.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(UserError, match="SHA-256"):
        read_model(altered)


def test_missing_mediapipe_names_the_extra(monkeypatch):
    from hpe_jax.detect import FaceDetector

    monkeypatch.setitem(__import__("sys").modules, "mediapipe", None)
    with pytest.raises(UserError, match=r"hpe-jax\[predict\]"):
        FaceDetector()


def _write_video(path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (SIZE, 48))
    for i in range(frames):
        writer.write(np.full((48, SIZE, 3), 30 * i, np.uint8))
    writer.release()


def test_cli_images_and_video_without_detection(checkpoint, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (50, 40, 3), np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), np.uint8)).save(folder / "sub" / "b.jpg")
    _write_video(tmp_path / "clip.avi", 4)
    out = tmp_path / "out"
    code, err = _run(
        capsys, folder, tmp_path / "clip.avi", "--checkpoint", checkpoint, "--output", out,
        "--no-detect", "--batch_size", BATCH, "--cube",
    )  # fmt: skip
    assert code == 0, err
    records = json.loads((out / "predictions.json").read_text())
    assert [(r["image"], r.get("frame")) for r in records] == [
        (str(folder / "a.png"), None),
        (str(folder / "sub" / "b.jpg"), None),
        *[(str(tmp_path / "clip.avi"), i) for i in range(4)],
    ]
    assert records[0]["faces"][0]["box"] == [0, 0, 40, 50]
    assert all(len(r["faces"]) == 1 and np.isfinite(r["faces"][0]["yaw"]) for r in records)
    assert Image.open(out / "a.png").size == (40, 50)
    assert Image.open(out / "sub" / "b.jpg").size == (30, 30)
    video = cv2.VideoCapture(str(out / "clip.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    video.release()


def test_cli_boxes_file_and_csv(checkpoint, tmp_path, capsys):
    image = np.random.default_rng(2).integers(0, 256, (90, 100, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "p.png")
    Image.fromarray(image[:, ::-1]).save(tmp_path / "q.png")
    _write_video(tmp_path / "clip.avi", 3)
    boxes = [
        {"image": str(tmp_path / "p.png"), "faces": [[20, 10, 60, 70], {"box": [50, 30, 95, 85]}]},
        {"image": str(tmp_path / "q.png"), "faces": []},
        {"image": str(tmp_path / "clip.avi"), "frame": 1, "faces": [[5, 6, 40, 42]]},
    ]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    code, err = _run(
        capsys, tmp_path / "p.png", tmp_path / "q.png", tmp_path / "clip.avi",
        "--checkpoint", checkpoint, "--output", out, "--boxes", tmp_path / "boxes.json",
        "--batch_size", BATCH, "--format", "csv",
    )  # fmt: skip
    assert code == 0, err
    rows = (out / "predictions.csv").read_text().splitlines()
    clip = tmp_path / "clip.avi"
    assert rows[0] == ",".join(predict.CSV_FIELDS)
    assert rows[1].startswith(f"{tmp_path / 'p.png'},,0,20.0,10.0,60.0,70.0,,")
    assert rows[2].startswith(f"{tmp_path / 'p.png'},,1,50.0,30.0,95.0,85.0,,")
    assert rows[3] == f"{tmp_path / 'q.png'},,,,,,,,,,"  # no face: listed, not an error
    # Video frames are matched by their index; a frame without an entry has no face.
    assert len(rows) == 7 and rows[4] == f"{clip},0,,,,,,,,," and rows[6] == f"{clip},2,,,,,,,,,"
    assert rows[5].startswith(f"{clip},1,0,5.0,6.0,40.0,42.0,,")
    assert all(np.isfinite(float(v)) for row in rows[1:3] + rows[5:6] for v in row.split(",")[-3:])


def test_cli_errors_are_one_line(checkpoint, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    empty_video = tmp_path / "empty.mp4"
    empty_video.write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    common = ["--checkpoint", checkpoint, "--no-detect", "--batch_size", BATCH]
    cases = [
        ([broken, "--output", tmp_path / "o1", *common], "broken.jpg: not a readable image"),
        ([empty_video, "--output", tmp_path / "o2", *common], "empty.mp4: not a readable video"),
        ([tmp_path / "nope.png", "--output", tmp_path / "o3", *common], "no such file"),
        ([tmp_path / "notes.txt", "--output", tmp_path / "o4", *common], "expected an image"),
        ([broken, "--output", tmp_path, *common], "would replace it"),
        ([broken, "--output", tmp_path / "o5", "--boxes", broken, *common], "exclude each other"),
    ]
    for argv, message in cases:
        code, err = _run(capsys, *argv)
        assert code == 2, (argv, err)
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_output_folder_inside_an_input_folder_is_not_read(tmp_path):
    (tmp_path / "out").mkdir()
    for name in ("a.png", "out/a.png", "out/b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    assert list_inputs([tmp_path], tmp_path / "out") == [
        Input(tmp_path / "a.png", tmp_path / "out" / "a.png", video=False)
    ]
    # The output folder itself given as the input: its files are inputs, each copy replacing it.
    with pytest.raises(UserError, match="would replace it"):
        list_inputs([tmp_path / "out"], tmp_path / "out")


def test_frameless_video_is_one_line(checkpoint, tmp_path, capsys):
    _write_video(tmp_path / "none.avi", 0)
    code, err = _run(
        capsys, tmp_path / "none.avi", "--checkpoint", checkpoint, "--output", tmp_path / "o",
        "--no-detect",
    )  # fmt: skip
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert (
        "none.avi: not a readable video" in err or "none.avi: video holds no readable frame" in err
    )


@needs_mediapipe
def test_blank_image_has_no_face(checkpoint, tmp_path, capsys):
    Image.new("RGB", (120, 90), (128, 128, 128)).save(tmp_path / "blank.png")
    code, err = _run(
        capsys, tmp_path / "blank.png", "--checkpoint", checkpoint, "--output", tmp_path / "o",
        "--batch_size", BATCH,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "predictions.json").read_text()) == [
        {"image": str(tmp_path / "blank.png"), "faces": []}
    ]


@needs_mediapipe
@pytest.mark.skipif(not AFLW.is_dir(), reason=f"{AFLW} not found")
def test_real_photos_one_face_each(checkpoint, tmp_path, capsys):
    """The done criterion of issue 18: each real AFLW2000 photo gives one face overlapping the
    landmark box (IoU >= 0.5), finite angles and an annotated copy."""
    from data_prep.aflw2000 import load_sample

    out = tmp_path / "out"
    code, err = _run(
        capsys, AFLW, "--checkpoint", checkpoint, "--output", out, "--batch_size", BATCH
    )
    assert code == 0, err
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == 16
    for record in records:
        name = record["image"].rsplit("/", 1)[-1]
        (face,) = record["faces"]
        truth = load_sample(AFLW, name[:-4]).box
        box = face["box"]
        inter = np.prod(
            np.clip(np.minimum(box[2:], truth[2:]) - np.maximum(box[:2], truth[:2]), 0, None)
        )
        union = np.prod(np.subtract(box[2:], box[:2])) + np.prod(truth[2:] - truth[:2]) - inter
        assert inter / union >= 0.5, (name, box, truth)
        assert all(np.isfinite(face[k]) for k in ("yaw", "pitch", "roll")) and face["score"] > 0.5
        assert Image.open(out / name).size == Image.open(AFLW / name).size
