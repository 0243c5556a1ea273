"""Inference throughput and latency: the JAX network against the original PyTorch network.

Same weights (the PyTorch reference's, converted with ``load_torch_state_dict``), same input,
same thread count. JAX: the eval-mode network (``model.eval()``) under ``jax.jit``, float32
unless ``--dtypes`` says otherwise. PyTorch: ``model.eval()`` under ``torch.inference_mode()``.
For every size: throughput at ``--batch`` (images/s from the median call) and latency at batch 1
(median ms), JAX and PyTorch alternating call by call after one warm-up call each; the logits of
both are compared first. Prints a table and appends one JSON line to
``benchmarks/results/inference.jsonl``.

    python benchmarks/bench_inference.py [--sizes 224 128] [--batch 16] [--repeats 5] \\
        [--threads N] [--dtypes float32]
"""

from __future__ import annotations

import argparse
import functools
import gc
import time

import harness

LATENCY_REPEAT_FACTOR = 4  # batch-1 calls are short: this many times --repeats of them


def jit_forward(model):
    """(jitted ``f(state, images) -> six logit arrays``, state) of ``model`` in eval mode."""
    import jax
    from flax import nnx

    from hpe_jax.compiler_options import compiler_options

    model.eval()
    graphdef, state = nnx.split(model)

    @functools.partial(jax.jit, compiler_options=compiler_options())
    def forward(state, images):
        return nnx.merge(graphdef, state)(images)

    return forward, state


def measure(args: argparse.Namespace, size: int, batch: int, dtype: str, pair=None) -> dict:
    """Alternating JAX / PyTorch eval forward passes at one (size, batch, dtype); the largest
    absolute logit difference between the two; timings in seconds. ``pair`` reuses a
    ``harness.reference_pair`` of this ``dtype``."""
    import jax
    import numpy as np
    import torch

    torch_model, jax_model = pair or harness.reference_pair(args.variant, seed=0, dtype=dtype)
    torch_model.eval()
    forward, state = jit_forward(jax_model)
    images = harness.synthetic_batch(batch, size)["image"]
    jax_images = jax.device_put(images)
    torch_images = harness.to_nchw(images)

    def jax_call():
        return jax.block_until_ready(forward(state, jax_images))

    def torch_call():
        with torch.inference_mode():
            return torch_model(torch_images)

    start = time.perf_counter()
    jax_out = jax_call()
    compile_s = time.perf_counter() - start
    max_diff = max(
        float(np.max(np.abs(np.asarray(a) - b.numpy())))
        for a, b in zip(jax_out, torch_call(), strict=True)
    )
    repeats = args.repeats if batch > 1 else LATENCY_REPEAT_FACTOR * args.repeats
    load_before = harness.load()
    times = harness.alternate({"jax": jax_call, "torch": torch_call}, repeats)
    return {
        "size": size,
        "batch": batch,
        "dtype": dtype,
        "repeats": repeats,
        "jax_compile_and_first_call_s": round(compile_s, 2),
        "max_abs_logit_diff": max_diff,
        **harness.compare(times, batch),
        "load_before": load_before,
        "load_after": harness.load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 128])
    parser.add_argument("--batch", type=int, default=16, help="throughput batch size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float32"], help="JAX compute dtypes")
    harness.add_common_arguments(parser)
    args = parser.parse_args()
    cpus = harness.start_both_frameworks(args)

    results, rows = [], []
    for dtype in args.dtypes:
        pair = harness.reference_pair(args.variant, seed=0, dtype=dtype)
        for size in args.sizes:
            for batch in (args.batch, 1):
                r = measure(args, size, batch, dtype, pair)
                gc.collect()
                results.append(r)
                kind = "latency" if batch == 1 else "throughput"
                rows.append(
                    [
                        size,
                        batch,
                        dtype,
                        *harness.comparison_cells(r),
                        1e3 * r["jax"]["median_s"],
                        1e3 * r["torch"]["median_s"],
                        f"{r['max_abs_logit_diff']:.1e}",
                        r["load_before"][0],
                    ]
                )
                print(
                    f"size {size} batch {batch} ({kind}) {dtype}: "
                    f"JAX {r['jax_images_per_s']:.2f} img/s {1e3 * r['jax']['median_s']:.1f} ms, "
                    f"PyTorch {r['torch_images_per_s']:.2f} img/s "
                    f"{1e3 * r['torch']['median_s']:.1f} ms, "
                    f"ratio {r['ratio_jax_over_torch']:.2f}",
                    flush=True,
                )
    info = harness.machine_info()
    print(
        f"\ninference (eval mode), variant {args.variant}, {args.threads} threads (CPUs {cpus}), "
        f"median of alternating calls; {info['cpu_model']}"
    )
    harness.print_table(
        [
            "size",
            "batch",
            "JAX dtype",
            *harness.COMPARISON_HEADERS,
            "JAX ms",
            "PyTorch ms",
            "max |dlogit|",
            "load 1m",
        ],
        rows,
    )
    path = harness.append_result(
        "inference",
        {
            "benchmark": "inference",
            "variant": args.variant,
            "threads": args.threads,
            "cpus": cpus,
            "machine": info,
            "results": results,
        },
    )
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
