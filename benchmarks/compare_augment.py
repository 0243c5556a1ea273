"""Can the training samples be told apart from the original's? Two-sample statistics on the real
300W-LP sample.

Draws ``--num`` training samples of the real 300W-LP record (``../shared/samples/300W_LP`` or
``--sample``) with ``hpe_jax.data.transforms`` and as many, held out (other seeds), with the
independent re-implementation of the original's sampling (``hpe_jax.testing.original_augment``),
at ``--size``, augmentation 0.5, flips on, and compares them (``hpe_jax.testing.augment_stats``):
op frequencies, brightness, sharpness and flip rate. With ``--baseline COMMIT`` the transform of
that commit is compared too (its op labels are not comparable, so only its photometric
frequencies, images and flips). Prints a table and appends one JSON line to
``benchmarks/results/compare_augment.jsonl``.

    python benchmarks/compare_augment.py [--num 3000] [--size 224] [--baseline 65543cb]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import harness
import numpy as np
import scipy.io
from PIL import Image

from hpe_jax.data import transforms
from hpe_jax.testing import augment_stats

SAMPLE = harness.REPO.parent / "shared" / "samples" / "300W_LP" / "IBUG_image_008_1_0"
STATISTICS = ("geometric", "photometric", "flip_rate", "brightness", "sharpness")


def read_sample(stem: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """The image (H, W, 3) uint8, tight box from ``pt2d``, pose (yaw, pitch, roll) degrees."""
    mat = scipy.io.loadmat(f"{stem}.mat")
    pt2d = mat["pt2d"]
    box = (pt2d[0].min(), pt2d[1].min(), pt2d[0].max(), pt2d[1].max())
    pose = np.degrees(mat["Pose_Para"][0, [1, 0, 2]].astype(np.float64))
    return np.asarray(Image.open(f"{stem}.jpg").convert("RGB")), box, pose


def load_baseline(commit: str, folder: Path) -> ModuleType:
    """``hpe_jax/data/transforms.py`` of ``commit`` as a module (it imports numpy and PIL only)."""
    source = subprocess.run(
        ["git", "show", f"{commit}:hpe_jax/data/transforms.py"],
        cwd=harness.REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = folder / "baseline_transforms.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_transforms", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


def baseline_log(
    sample, args: argparse.Namespace, seed: int, old: ModuleType
) -> augment_stats.SampleLog:
    """Samples of the baseline transform (normalised floats rounded back to grey levels)."""
    image, box, pose = sample
    log = augment_stats.SampleLog()
    rng = np.random.default_rng(seed)
    for _ in range(args.num):
        params = old.sample_augment_params(rng, augment=0.5, flip=True)
        out, angles = old.augment_example(image, box, pose, params, args.size)
        log.add(
            transforms.denormalize(out),
            flipped=bool(angles[0] * pose[0] < 0),
            augmented=True,
            geometric="-",
            photometric=params.photometric,
        )
    return log


def _cells(result: dict[str, Any], name: str) -> list[Any]:
    entry = result[name]
    if "mean_a" in entry:
        return [f"{entry['mean_a']:.2f}", f"{entry['mean_b']:.2f}", f"{entry['p']:.3g}"]
    if set(entry["a"]) == {"-"}:
        return ["-", "-", "-"]

    def freqs(f: dict[str, float]) -> str:
        return " ".join(f"{k}:{v:.3f}" for k, v in f.items())

    return [freqs(entry["a"]), freqs(entry["b"]), f"{entry['p']:.3g}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="300W-LP stem (.jpg, .mat)")
    parser.add_argument("--num", type=int, default=3000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--baseline", help="also compare the transform of this git commit")
    args = parser.parse_args()
    if not Path(f"{args.sample}.jpg").is_file():
        sys.exit(f"error: {args.sample}.jpg not found (give --sample)")
    sample = read_sample(args.sample)

    reference = augment_stats.original_log(*sample, size=args.size, num=args.num, seed=1)
    results = {
        "current": augment_stats.compare(
            augment_stats.transform_log(*sample, size=args.size, num=args.num, seed=2), reference
        )
    }
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            old = load_baseline(args.baseline, Path(tmp))
        masked = dataclasses.replace(reference, geometric=["-"] * len(reference.geometric))
        results["baseline"] = augment_stats.compare(
            baseline_log(sample, args, seed=3, old=old), masked
        )

    print(
        f"{args.num} samples each of {Path(args.sample).name} at {args.size}, augmentation 0.5, "
        f"flips on; a = hpe-jax, b = the original's sampling (re-implemented); p: chi-square "
        f"(frequencies) or KS (means shown)"
    )
    for name, result in results.items():
        print(f"\n{name}: smallest p {augment_stats.min_p(result):.3g}")
        harness.print_table(
            ["statistic", "a", "b", "p"], [[s, *_cells(result, s)] for s in STATISTICS]
        )
    path = harness.append_result(
        "compare_augment",
        {
            "benchmark": "compare_augment",
            "git": harness._git_commit(),
            "num": args.num,
            "size": args.size,
            "baseline": args.baseline,
            "results": results,
        },
    )
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
