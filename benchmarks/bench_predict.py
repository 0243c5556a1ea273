"""End-to-end faces per second on photos (detect + crop + network): JAX against onnxruntime.

The photos of ``--images`` (default: the 16 real AFLW2000 samples of ../shared), ``--repeat``
times over. Both pipelines find the faces with ``hpe_jax.detect.FaceDetector`` and crop them with
``Predictor.crops``; the network is variant 's' at 224 with random weights (speed does not depend
on them): JAX through ``hpe_jax.Predictor.predict_many`` (jit with ``compiler_options``, the CPU
kernel set), onnxruntime on the file of ``hpe_jax.export.export_onnx`` (the 'xla' kernel set),
fed the same crops in batches of the same size. For every ``--batches`` size, after one warm-up
pass each, the two alternate pass by pass (``--passes``); faces/s is from the median pass. The
angles of the two are compared.

``--checkpoint CKPT`` also measures the box calibration (``hpe_jax.detect.BOX_CALIBRATION``) on
the AFLW2000 samples: the angles with the calibrated and with the raw BlazeFace box, their
differences and each one's error against the samples' labels.

    python benchmarks/bench_predict.py [--images DIR] [--repeat 4] [--batches 1 16]
        [--passes 3] [--threads N] [--checkpoint CKPT [--input_size S]]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import harness

SAMPLES = harness.REPO.parent / "shared" / "samples" / "AFLW2000"


def _photos(folder: Path, repeat: int) -> list:
    from hpe_jax.media import list_inputs, read_image

    images = [read_image(item.path) for item in list_inputs([folder], "/nonexistent")]
    return images * repeat


def _onnx_session(model, size: int, threads: int):
    import onnx
    import onnxruntime

    from hpe_jax.export import export_onnx

    path = Path(tempfile.mkdtemp()) / "hpe.onnx"
    onnx.save(export_onnx(model, size), path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_pass(session, detector, predictor, images: list, batch: int):
    """Detect, crop and run ``images`` through the ONNX session in batches of ``batch`` crops;
    returns the (N, 3) angles."""
    import numpy as np

    crops, out = [], []
    for image in images:
        boxes = [d.box for d in detector.detect(image)]
        if boxes:
            crops.extend(predictor.crops(image, np.array(boxes)))
        while len(crops) >= batch:
            out.append(session.run(["angles"], {"images": np.stack(crops[:batch])})[0])
            crops = crops[batch:]
    if crops:
        out.append(session.run(["angles"], {"images": np.stack(crops)})[0])
    return np.concatenate(out)


def measure_speed(args: argparse.Namespace) -> dict:
    import numpy as np

    import hpe_jax
    from hpe_jax.detect import FaceDetector

    images = _photos(Path(args.images), args.repeat)
    exported = hpe_jax.init_model("s", seed=0, kernels="xla")
    exported.eval()
    session = _onnx_session(exported, 224, args.threads)
    network = hpe_jax.init_model("s", seed=0)
    rows, results = [], {}
    with FaceDetector() as detector:
        for batch in args.batches:
            predictor = hpe_jax.Predictor(network, batch_size=batch)

            def run_jax(p=predictor):
                return np.array(
                    [[f.yaw, f.pitch, f.roll] for fs in p.predict_many(images) for f in fs]
                )

            def run_onnx(p=predictor, b=batch):
                return _onnx_pass(session, detector, p, images, b)

            timings: dict[str, list[float]] = {"jax": [], "onnxruntime": []}
            angles = {"jax": run_jax(), "onnxruntime": run_onnx()}  # warm-up (compiles)
            for _ in range(args.passes):
                for name, fn in (("jax", run_jax), ("onnxruntime", run_onnx)):
                    start = time.perf_counter()
                    fn()
                    timings[name].append(time.perf_counter() - start)
            faces = len(angles["jax"])
            diff = float(np.abs(angles["jax"] - angles["onnxruntime"]).max())
            speed = {k: faces / statistics.median(v) for k, v in timings.items()}
            results[batch] = {"faces": faces, "faces_per_s": speed, "max_angle_diff_deg": diff}
            rows.append([batch, faces, speed["jax"], speed["onnxruntime"],
                         speed["onnxruntime"] / speed["jax"], diff])  # fmt: skip
            predictor.close()
    print(
        f"{len(images)} photos ({args.images} x {args.repeat}), 's' at 224, {args.threads} threads"
    )
    harness.print_table(
        ["batch", "faces", "JAX faces/s", "onnxruntime faces/s", "ort/JAX", "max diff deg"], rows
    )
    return results


def measure_calibration(args: argparse.Namespace) -> dict:
    import numpy as np

    import hpe_jax
    from data_prep.aflw2000 import load_sample
    from hpe_jax.detect import FaceDetector, calibrate_box
    from hpe_jax.media import read_image

    names = sorted(p.stem for p in SAMPLES.glob("*.jpg"))
    raw, calibrated, truth = [], [], []
    with (
        FaceDetector(calibrate=False) as detector,
        hpe_jax.Predictor(args.checkpoint, detect=False, input_size=args.input_size) as predictor,
    ):
        for name in names:
            image = read_image(SAMPLES / f"{name}.jpg")
            box = detector.detect(image)[0].box
            for out, b in ((raw, box), (calibrated, calibrate_box(box))):
                (face,) = predictor.predict(image, boxes=[b])
                out.append([face.yaw, face.pitch, face.roll])
            truth.append(load_sample(SAMPLES, name).pose)
    raw, calibrated, truth = map(np.array, (raw, calibrated, truth))
    change = np.abs(calibrated - raw)
    result = {
        "samples": len(names),
        "mean_abs_change_deg": change.mean(0).round(2).tolist(),
        "max_abs_change_deg": change.max(0).round(2).tolist(),
        "mae_raw_deg": np.abs(raw - truth).mean(0).round(2).tolist(),
        "mae_calibrated_deg": np.abs(calibrated - truth).mean(0).round(2).tolist(),
    }
    print(f"box calibration, {len(names)} AFLW2000 samples, {args.checkpoint}:")
    harness.print_table(
        ["(yaw, pitch, roll) degrees", "values"], [[k, str(v)] for k, v in result.items()]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(SAMPLES))
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=harness.default_threads())
    parser.add_argument("--checkpoint", default=None, help="also measure the box calibration")
    parser.add_argument("--input_size", type=int, default=None, help="of --checkpoint's crops")
    args = parser.parse_args()
    harness.configure_threads(args.threads)
    record = {"machine": harness.machine_info(), "speed": measure_speed(args)}
    if args.checkpoint:
        record["calibration"] = measure_calibration(args)
    print(f"appended to {harness.append_result('predict', record)}")


if __name__ == "__main__":
    main()
