"""Is the input pipeline ever the bottleneck of training? Loader rate against step rate.

Writes ``--records`` synthetic 300W-LP records as a TFDS dataset (``bench_pipeline.write_records``:
450x450 JPEGs, boxes, poses), then measures, at ``--size`` and ``--batch``:

1. the training loader alone (``bench_pipeline.measure``: ``make_train_loader`` with 0, 1 and 2
   grain workers, augmentation on), images/s;
2. the jitted JAX training step alone (``bench_train.setup``, float32) on one in-memory batch,
   images/s: the consumption rate;
3. the two together, as ``hpe_jax.train`` runs them: every step takes the loader's next batch
   (for each worker count), images/s, and the share of the wall time spent waiting in
   ``next(iterator)``.

On a machine with few cores the loader's threads and workers compete with XLA for the same
CPUs, so (3) can be slower than (2) even when (1) is far above (2). Prints a table and appends
one JSON line to ``benchmarks/results/loader.jsonl``.

    python benchmarks/bench_loader.py [--size 224] [--batch 16] [--workers 0 1 2] \\
        [--steps 4] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import harness


def coupled(data_dir: Path, args: argparse.Namespace, workers: int, jax_step) -> dict:
    """Training steps fed by the loader: images/s and the fraction of time spent in ``next``."""
    from bench_pipeline import train_loader

    loader = train_loader(
        data_dir,
        batch_size=args.batch,
        target_size=args.size,
        augment=args.augment,
        worker_count=workers,
        num_threads=args.num_threads,
    )
    iterator = iter(loader)
    jax_step(next(iterator))
    waits, steps = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        batch = next(iterator)
        got = time.perf_counter()
        jax_step(batch)
        waits.append(got - start)
        steps.append(time.perf_counter() - start)
    iterator.close()
    return {
        "worker_count": workers,
        "images_per_s": args.batch / statistics.median(steps),
        "wait_fraction": sum(waits) / sum(steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--augment", type=float, default=0.5)
    parser.add_argument("--num_threads", type=int, default=2, help="loader threads per process")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per setting")
    parser.add_argument("--loader_batches", type=int, default=10, help="timed loader batches")
    harness.add_common_arguments(parser)
    args = parser.parse_args()
    cpus = harness.start_both_frameworks(args)

    import jax
    from bench_pipeline import measure as loader_alone
    from bench_pipeline import write_records
    from bench_train import setup

    loader_args = argparse.Namespace(
        batch_size=args.batch,
        target_size=args.size,
        augment=args.augment,
        num_threads=args.num_threads,
        warmup=2,
        batches=args.loader_batches,
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_records(data_dir, "train", args.records)
        alone = [loader_alone(data_dir, loader_args, w) for w in args.workers]
        for r in alone:
            print(f"loader alone, {r['worker_count']} workers: {r['images_per_s']:.1f} img/s")

        jax_step, _, _ = setup(args.variant, args.size, args.batch, "float32")
        load_before = harness.load()
        times = harness.alternate({"jax": jax_step}, args.steps)["jax"]
        step_rate = args.batch / harness.summarize(times)["median_s"]
        print(f"training step alone: {step_rate:.2f} img/s", flush=True)

        together = [coupled(data_dir, args, w, jax_step) for w in args.workers]
        for r in together:
            print(
                f"step fed by the loader, {r['worker_count']} workers: "
                f"{r['images_per_s']:.2f} img/s, {100 * r['wait_fraction']:.1f}% waiting",
                flush=True,
            )
    info = harness.machine_info()
    print(
        f"\ninput pipeline vs training step, {args.size}x{args.size}, batch {args.batch}, "
        f"{args.threads} threads (CPUs {cpus}), JAX {jax.__version__}; {info['cpu_model']}"
    )
    harness.print_table(
        [
            "workers",
            "loader alone img/s",
            "step alone img/s",
            "step fed by loader img/s",
            "time waiting for data",
        ],
        [
            [
                a["worker_count"],
                a["images_per_s"],
                step_rate,
                t["images_per_s"],
                f"{100 * t['wait_fraction']:.1f}%",
            ]
            for a, t in zip(alone, together, strict=True)
        ],
    )
    path = harness.append_result(
        "loader",
        {
            "benchmark": "loader_vs_step",
            "variant": args.variant,
            "size": args.size,
            "batch": args.batch,
            "records": args.records,
            "augment": args.augment,
            "loader_threads": args.num_threads,
            "threads": args.threads,
            "cpus": cpus,
            "machine": info,
            "loader_alone": alone,
            "step_alone_images_per_s": step_rate,
            "step_fed_by_loader": together,
            "load_before": load_before,
            "load_after": harness.load(),
        },
    )
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
