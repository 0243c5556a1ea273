"""The TFDS dataset format against the format it replaced (msgpack records in ArrayRecord shards
with a metadata json), on the same data, in one run.

The old format is measured at ``--base`` (default: the parent of the commit that added
``data_prep/builders``), checked out in a temporary ``git worktree``; the new one in this
working tree. Both expose the same calls (``data_prep.convert.convert`` and
``hpe_jax.data.pipeline.make_train_loader``), so one child process per measurement runs this
same script with ``--child`` inside either tree. The data: ``--records`` synthetic heads in the
real 300W-LP format (450x450 JPEG + .mat, ``data_prep.synthetic``), generated once.

Per repeat, alternating old and new: conversion records/s with ``--convert_workers`` processes
(wall time of ``convert``, pool start-up included), and the training loader's images/s at
``--target_size`` (batch ``--batch_size``, augmentation 0.5, 2 threads) with each of
``--loader_workers`` grain workers after ``--warmup`` batches. Prints the medians and the ratio
new / old, and appends one JSON line to ``benchmarks/results/format.jsonl``.

    python benchmarks/bench_format.py [--records 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "format.jsonl"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()


def default_base() -> str:
    """The last commit with the old format: the parent of the one that added the TFDS builders."""
    adding = _git("log", "--diff-filter=A", "--format=%H", "--", "data_prep/builders/base.py")
    return _git("rev-parse", f"{adding.splitlines()[-1]}^")


def child(args: argparse.Namespace) -> None:
    """One measurement in the tree this process imports from; prints one JSON line."""
    if args.child == "convert":
        from data_prep.convert import convert

        start = time.perf_counter()
        meta = convert("300w_lp", args.raw, args.out, workers=args.convert_workers, progress=False)
        seconds = time.perf_counter() - start
        print(json.dumps({"records": meta["num_records"], "seconds": seconds}))
        return
    from hpe_jax.data.pipeline import make_train_loader

    loader = make_train_loader(
        args.out,
        "train",
        batch_size=args.batch_size,
        target_size=args.target_size,
        augment=0.5,
        flip=True,
        seed=0,
        worker_count=args.workers,
        num_threads=2,
        shard_index=0,
        shard_count=1,
    )
    iterator = iter(loader)
    for _ in range(args.warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(iterator)
    seconds = time.perf_counter() - start
    iterator.close()
    print(json.dumps({"images_per_s": args.batches * args.batch_size / seconds}))


def run_child(tree: Path, mode: str, args: argparse.Namespace, out: Path, **extra: int) -> dict:
    """Runs ``--child mode`` of this script with ``tree`` first on the import path."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--raw",
        str(args.raw),
        "--out",
        str(out),
        *[f"--{k}={v}" for k, v in vars(args).items() if k in PASSED],
        *[f"--{k}={v}" for k, v in extra.items()],
    ]
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{mode} in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


PASSED = ("convert_workers", "batch_size", "target_size", "warmup", "batches")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--base", help="commit with the old format (default: see the docstring)")
    p.add_argument("--convert_workers", type=int, default=2)
    p.add_argument("--loader_workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--target_size", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--child", choices=("convert", "loader"), help=argparse.SUPPRESS)
    p.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return

    base = args.base or default_base()
    head = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        old_tree = tmp_path / "old_tree"
        _git("worktree", "add", "--detach", str(old_tree), base)
        try:
            sys.path.insert(0, str(REPO))
            from data_prep.synthetic import generate

            args.raw = tmp_path / "300W_LP"
            generate("300w_lp", args.records, args.raw, 0, image_size=450)
            jpeg = [f.stat().st_size for f in args.raw.rglob("*.jpg")]
            trees = {"old": old_tree, "new": REPO}
            runs: dict[str, dict[str, list[float]]] = {k: {} for k in trees}
            for repeat in range(args.repeats):
                for fmt, tree in trees.items():
                    out = tmp_path / f"{fmt}_{repeat}"
                    conv = run_child(tree, "convert", args, out)
                    rate = conv["records"] / conv["seconds"]
                    runs[fmt].setdefault("convert_records_per_s", []).append(rate)
                    for workers in args.loader_workers:
                        result = run_child(tree, "loader", args, out, workers=workers)
                        key = f"loader_{workers}_workers_images_per_s"
                        runs[fmt].setdefault(key, []).append(result["images_per_s"])
                    shutil.rmtree(out)
                    print(fmt, repeat, {k: round(v[-1], 1) for k, v in runs[fmt].items()})
        finally:
            _git("worktree", "remove", "--force", str(old_tree))
    medians = {fmt: {k: statistics.median(v) for k, v in r.items()} for fmt, r in runs.items()}
    print(
        f"\n{args.records} synthetic 300W-LP records 450x450 (mean JPEG "
        f"{statistics.mean(jpeg) / 1024:.1f} KiB); old = {base[:7]}, new = {head[:7]}"
        f"{' + uncommitted changes' if dirty else ''}; medians of {args.repeats}; "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'measure':<36} {'old':>9} {'new':>9} {'new/old':>8}")
    for key in medians["old"]:
        old, new = medians["old"][key], medians["new"][key]
        print(f"{key:<36} {old:>9.1f} {new:>9.1f} {new / old:>8.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "benchmark": "format_old_vs_tfds",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "base": base,
        "head": head,
        "uncommitted_changes": dirty,
        "records": args.records,
        "mean_jpeg_bytes": round(statistics.mean(jpeg)),
        "convert_workers": args.convert_workers,
        "target_size": args.target_size,
        "batch_size": args.batch_size,
        "runs": runs,
        "medians": medians,
    }
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
