"""Training-step throughput: the jitted JAX train step against the original's PyTorch step.

JAX: ``hpe_jax.train_state.train_step`` jitted as ``hpe_jax.train.Trainer`` jits it (mesh over the
devices, state replicated and donated, batch sharded), AdamW of ``make_optimizer``, compute dtype
``config.model.dtype`` (float32 and bfloat16; parameters stay float32). PyTorch:
``torch_train_step`` of ``hpe_jax/testing/torch_reference.py`` (train mode, AdamW with 5x heads,
same loss), float32. Same weights in both, same synthetic batch, same thread count. For every (size,
batch, dtype) the JAX step and the PyTorch step run alternately, ``--repeats`` rounds after one
warm-up step each, each framework in a worker process of its own
(``harness.alternate_in_processes``: in one process PyTorch's allocations push XLA's temporary
buffer onto fresh pages; ``--same-process`` measures that way); images/s from the median step time.
Prints a table and appends one JSON line to ``benchmarks/results/train.jsonl``.

    python benchmarks/bench_train.py [--sizes 224 128] [--batch 16] [--dtypes float32] \\
        [--repeats 3] [--threads N] [--same-process]

(the defaults take about 4 minutes on 2 cores, mostly XLA compilation; the full grid of
BENCHMARKS.md adds ``--batch 16 32 --dtypes float32 bfloat16``).
"""

from __future__ import annotations

import argparse
import gc
import time

import harness


def jit_train_step(config, model):
    """(jitted step, state, rest, batch sharding) for ``model`` on this host's devices, built by
    ``make_train_step`` as ``Trainer`` builds them."""
    import jax

    from hpe_jax.train_state import create_train_state, make_train_step, split_model

    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    program = make_train_step(config, mesh, total_steps=1_000_000)
    *_, rest = split_model(model)
    state = jax.device_put(
        create_train_state(model, program.tx, config.seed), program.state.step.sharding
    )
    return program.step, state, rest, program.batch["image"].sharding


def setup(variant: str, size: int, batch: int, dtype: str) -> tuple:
    """``(jax_step, torch_step, lower)`` at one configuration: two blocking closures that run
    one training step each (same weights, same synthetic batch; ``jax_step`` optionally takes
    another numpy batch of the same shapes, e.g. a loader's), and a function returning the
    lowered JAX step (its ``.compile()`` shares the executable with ``jax_step``)."""
    import jax
    import torch

    from configs.default import get_config
    from hpe_jax.testing.torch_reference import make_torch_optimizer, torch_train_step

    config = get_config()
    config.model.variant = variant
    config.model.dtype = dtype
    torch_model, jax_model = harness.reference_pair(variant, seed=0, dtype=dtype)
    optimizer = make_torch_optimizer(torch_model)
    data = harness.synthetic_batch(batch, size)
    step, state, rest, batch_sharding = jit_train_step(config, jax_model)
    del jax_model
    jax_batch = {k: jax.device_put(v, batch_sharding) for k, v in data.items()}
    torch_batch = (
        harness.to_nchw(data["image"]),
        torch.from_numpy(data["coarse"]).long(),
        torch.from_numpy(data["shift"]).long(),
        torch.from_numpy(data["angles"]),
    )
    holder = {"state": state}

    def jax_step(numpy_batch: dict | None = None) -> None:
        arrays = jax_batch
        if numpy_batch is not None:
            arrays = {k: jax.device_put(v, batch_sharding) for k, v in numpy_batch.items()}
        holder["state"], metrics = step(holder["state"], arrays, rest)
        jax.block_until_ready((holder["state"], metrics))

    def torch_step() -> None:
        torch_train_step(torch_model, optimizer, *torch_batch)

    def lower():
        return step.lower(holder["state"], jax_batch, rest)

    return jax_step, torch_step, lower


def train_steps(variant: str, size: int, batch: int, dtype: str) -> dict:
    """``{"jax": jax_step, "torch": torch_step}`` of ``setup`` (the functions of the workers of
    ``harness.alternate_in_processes``)."""
    jax_step, torch_step, _ = setup(variant, size, batch, dtype)
    return {"jax": jax_step, "torch": torch_step}


def measure(args: argparse.Namespace, size: int, batch: int, dtype: str) -> dict:
    """Alternating JAX / PyTorch train steps at one configuration, in two worker processes
    (in this one with ``args.same_process``); timings in seconds."""
    load_before = harness.load()
    if args.same_process:
        steps = train_steps(args.variant, size, batch, dtype)
        start = time.perf_counter()
        steps["jax"]()
        compile_s = time.perf_counter() - start
        times = harness.alternate(steps, args.repeats)
    else:
        times, first_call_s = harness.alternate_in_processes(
            train_steps,
            (args.variant, size, batch, dtype),
            ["jax", "torch"],
            args.threads,
            args.repeats,
        )
        compile_s = first_call_s["jax"]
    return {
        "size": size,
        "batch": batch,
        "dtype": dtype,
        "processes": "one" if args.same_process else "one per framework",
        "jax_compile_and_first_step_s": round(compile_s, 2),
        **harness.compare(times, batch),
        "load_before": load_before,
        "load_after": harness.load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 128])
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--dtypes", nargs="+", default=["float32"], help="JAX compute dtypes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="run both frameworks in this process instead of one worker process each",
    )
    harness.add_common_arguments(parser)
    args = parser.parse_args()
    cpus = harness.start_both_frameworks(args)

    rows, results = [], []
    for size in args.sizes:
        for batch in args.batch:
            for dtype in args.dtypes:
                r = measure(args, size, batch, dtype)
                gc.collect()
                results.append(r)
                rows.append(
                    [
                        size,
                        batch,
                        dtype,
                        *harness.comparison_cells(r),
                        r["jax_compile_and_first_step_s"],
                        r["load_before"][0],
                    ]
                )
                print(
                    f"size {size} batch {batch} {dtype}: JAX {r['jax_images_per_s']:.2f} img/s, "
                    f"PyTorch {r['torch_images_per_s']:.2f} img/s, "
                    f"ratio {r['ratio_jax_over_torch']:.2f}",
                    flush=True,
                )
    info = harness.machine_info()
    print(
        f"\ntraining step, variant {args.variant}, {args.threads} threads (CPUs {cpus}), "
        f"median of {args.repeats} alternating steps, "
        f"{'one process' if args.same_process else 'one process per framework'}; "
        f"{info['cpu_model']}"
    )
    harness.print_table(
        [
            "size",
            "batch",
            "JAX dtype",
            *harness.COMPARISON_HEADERS,
            "JAX compile s",
            "load 1m",
        ],
        rows,
    )
    path = harness.append_result(
        "train",
        {
            "benchmark": "train_step",
            "variant": args.variant,
            "threads": args.threads,
            "cpus": cpus,
            "repeats": args.repeats,
            "machine": info,
            "results": results,
        },
    )
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
