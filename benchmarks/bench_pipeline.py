"""Images per second delivered by the training pipeline with 0, 1 and 2 grain workers.

Generates ``--records`` synthetic heads in the real 300W-LP format (450x450 RGB JPEG + .mat,
``data_prep.synthetic``) in a temporary folder and converts them (``python -m data_prep``'s
``convert``) into a TFDS dataset, then for each worker count builds
``hpe_jax.data.pipeline.make_train_loader`` at ``--target_size``, skips ``--warmup`` batches
(worker start-up included) and times ``--batches`` more. Prints a table and appends one JSON
line to ``benchmarks/results/pipeline.jsonl``.

    JAX_PLATFORMS=cpu python benchmarks/bench_pipeline.py [--workers 0 1 2] [--target_size 224]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import grain

from data_prep.convert import convert
from data_prep.synthetic import generate
from hpe_jax.data.pipeline import make_train_loader

IMAGE_SIDE = 450
RESULTS = Path(__file__).resolve().parent / "results" / "pipeline.jsonl"


def write_records(out: Path, split: str, num: int, seed: int = 0) -> int:
    """Writes ``num`` synthetic 300W-LP records as split ``split`` of a TFDS dataset in data
    dir ``out`` (raw files in ``out/raw``); returns the total JPEG bytes."""
    raw = out / "raw"
    generate("300w_lp", num, raw, seed, image_size=IMAGE_SIDE)
    convert("300w_lp", raw, out, split=split, progress=False)
    return sum(p.stat().st_size for p in raw.rglob("*.jpg"))


def train_loader(
    data_dir: Path,
    *,
    batch_size: int,
    target_size: int,
    augment: float,
    worker_count: int,
    num_threads: int,
) -> grain.IterDataset:
    """The training loader of one process (``make_train_loader``, flips on, seed 0) over the
    ``train`` records of ``data_dir``."""
    return make_train_loader(
        data_dir,
        "train",
        batch_size=batch_size,
        target_size=target_size,
        augment=augment,
        flip=True,
        seed=0,
        worker_count=worker_count,
        num_threads=num_threads,
        shard_index=0,
        shard_count=1,
    )


def measure(data_dir: Path, args: argparse.Namespace, worker_count: int) -> dict[str, float]:
    """Start-up time (first ``warmup`` batches) and steady images/s of one worker count."""
    loader = train_loader(
        data_dir,
        batch_size=args.batch_size,
        target_size=args.target_size,
        augment=args.augment,
        worker_count=worker_count,
        num_threads=args.num_threads,
    )
    start = time.perf_counter()
    iterator = iter(loader)
    for _ in range(args.warmup):
        next(iterator)
    warm = time.perf_counter()
    for _ in range(args.batches):
        batch = next(iterator)
        del batch
    end = time.perf_counter()
    iterator.close()
    return {
        "worker_count": worker_count,
        "startup_s": round(warm - start, 3),
        "images_per_s": round(args.batches * args.batch_size / (end - warm), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--target_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--augment", type=float, default=0.5)
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        jpeg_bytes = write_records(data_dir, "train", args.records)
        results = [measure(data_dir, args, w) for w in args.workers]

    print(
        f"training pipeline, {args.records} records of {IMAGE_SIDE}x{IMAGE_SIDE} JPEG "
        f"(mean {jpeg_bytes / args.records / 1024:.1f} KiB) -> {args.target_size}, "
        f"batch {args.batch_size}, augment {args.augment}, {args.num_threads} threads/process, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'workers':>8} {'images/s':>10} {'start-up s':>11}")
    for r in results:
        print(f"{r['worker_count']:>8} {r['images_per_s']:>10.1f} {r['startup_s']:>11.2f}")

    line = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "grain": grain.__version__,
        "records": args.records,
        "mean_jpeg_bytes": round(jpeg_bytes / args.records),
        "target_size": args.target_size,
        "batch_size": args.batch_size,
        "augment": args.augment,
        "num_threads": args.num_threads,
        "warmup_batches": args.warmup,
        "timed_batches": args.batches,
        "results": results,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    print(f"appended to {args.results}")


if __name__ == "__main__":
    main()
