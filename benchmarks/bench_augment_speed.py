"""Training-loader images/s of this tree against a baseline commit, alternating in one run.

Extracts ``--baseline`` (``git archive``) into a temporary folder, then ``--rounds`` times runs
each tree's own ``benchmarks/bench_pipeline.py`` (same synthetic 300W-LP-like records, seed 0)
with that tree's code (``PYTHONPATH``), baseline first, and prints every round and the medians;
appends one JSON line to ``benchmarks/results/augment_speed.jsonl``. Used to check that a change of
the training transform keeps the loader at least as fast.

    python benchmarks/bench_augment_speed.py --baseline 65543cb [--workers 2] [--target_size 224] \\
        [--rounds 3] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import harness

REPO = Path(__file__).resolve().parents[1]


def extract(commit: str, dest: Path) -> str:
    """Writes the tree of ``commit`` into ``dest``; returns the full commit hash."""
    full = subprocess.run(
        ["git", "rev-parse", "--verify", f"{commit}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = dest.parent / "baseline.tar"
    subprocess.run(["git", "archive", "-o", str(archive), full], cwd=REPO, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return full


def measure(tree: Path, args: argparse.Namespace, results: Path) -> float:
    """Images/s of ``tree``'s training loader (its bench_pipeline.py) with ``args.workers``."""
    command = [
        sys.executable,
        str(tree / "benchmarks" / "bench_pipeline.py"),
        "--workers",
        str(args.workers),
        "--target_size",
        str(args.target_size),
        "--batch_size",
        str(args.batch_size),
        "--records",
        str(args.records),
        "--batches",
        str(args.batches),
        "--augment",
        str(args.augment),
        "--results",
        str(results),
    ]
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_PLATFORMS": "cpu"}
    subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True, text=True)
    line = json.loads(results.read_text().splitlines()[-1])
    return float(line["results"][0]["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git commit of the old transform")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--augment", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rates: dict[str, list[float]] = {"baseline": [], "current": []}
    load_before = harness.load()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        baseline_commit = extract(args.baseline, baseline)
        trees = {"baseline": baseline, "current": REPO}
        for round_index in range(args.rounds):
            for name, tree in trees.items():
                rates[name].append(measure(tree, args, Path(tmp) / f"{name}.jsonl"))
            print(
                f"round {round_index + 1}: baseline {rates['baseline'][-1]:.1f} img/s, "
                f"current {rates['current'][-1]:.1f} img/s",
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in rates.items()}
    info = {"cpu_model": harness.cpu_model(), "nproc": os.cpu_count(), "git": harness._git_commit()}
    print(
        f"\ntraining loader, {args.target_size}x{args.target_size}, batch {args.batch_size}, "
        f"{args.workers} grain workers, augment {args.augment}, {args.rounds} rounds; "
        f"{info['cpu_model']}, {info['nproc']} CPUs"
    )
    harness.print_table(
        ["tree", "commit", "median img/s", "rounds img/s"],
        [
            ["baseline", baseline_commit[:7], medians["baseline"], str(rates["baseline"])],
            ["current", info["git"], medians["current"], str(rates["current"])],
        ],
    )
    print(f"current / baseline: {medians['current'] / medians['baseline']:.2f}")
    print(f"load average (1, 5, 15 min) before {load_before}, after {harness.load()}")
    path = harness.append_result(
        "augment_speed",
        {
            "benchmark": "augment_speed",
            "baseline_commit": baseline_commit,
            "machine": info,
            "args": vars(args),
            "images_per_s": rates,
            "median_images_per_s": medians,
            "load_before": load_before,
            "load_after": harness.load(),
        },
    )
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
