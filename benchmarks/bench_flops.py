"""Model FLOPs per image and achieved FLOP/s as a fraction of the machine's matmul peak.

FLOPs come from XLA's cost analysis of the compiled programs
(``jax.jit(...).lower(...).compile().cost_analysis()['flops']``, every operation counted,
multiply-add = 2): the eval forward pass and the whole training step (forward, backward,
AdamW) at ``--batch``, divided by the batch. As a cross-check the PyTorch forward pass is counted
with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls only). The peak is
measured here: the median time of a 2048 x 2048 x 2048 float32 matmul (``jnp.dot`` under jit,
and ``torch.mm``), 2 * 2048^3 FLOPs. Achieved FLOP/s = FLOPs per image x images/s, with images/s
measured here too (JAX and PyTorch alternating, as ``bench_inference`` / ``bench_train``), and
the same (XLA) FLOP count used for both frameworks since the network is the same. Prints a
table and appends one JSON line to ``benchmarks/results/flops.jsonl``.

    python benchmarks/bench_flops.py [--sizes 224] [--batch 16] [--repeats 3] [--threads N] \\
        [--modes inference train]
"""

from __future__ import annotations

import argparse
import gc

import harness

MATMUL_N = 2048


def matmul_peak(repeats: int) -> dict[str, float]:
    """GFLOP/s of a 2048^3 float32 matmul in JAX and in PyTorch (median of ``repeats``)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    a = rng.standard_normal((MATMUL_N, MATMUL_N)).astype(np.float32)
    b = rng.standard_normal((MATMUL_N, MATMUL_N)).astype(np.float32)
    ja, jb = jax.device_put(a), jax.device_put(b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    dot = jax.jit(jnp.dot)
    times = harness.alternate(
        {
            "jax": lambda: jax.block_until_ready(dot(ja, jb)),
            "torch": lambda: torch.mm(ta, tb),
        },
        max(repeats, 5),
    )
    flops = 2.0 * MATMUL_N**3
    return {name: flops / harness.summarize(t)["median_s"] / 1e9 for name, t in times.items()}


def torch_forward_flops(size: int, variant: str) -> float:
    """Convolution and matmul FLOPs of one image through the PyTorch network (eval)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hpe_jax.testing.torch_reference import build_reference_model

    model = build_reference_model(variant).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def inference_row(args: argparse.Namespace, size: int) -> dict:
    """XLA forward FLOPs per image and the alternating inference throughput at ``--batch``."""
    import jax
    from bench_inference import jit_forward

    torch_model, jax_model = harness.reference_pair(args.variant, seed=0)
    torch_model.eval()
    forward, state = jit_forward(jax_model)
    images = harness.synthetic_batch(args.batch, size)["image"]
    jax_images, torch_images = jax.device_put(images), harness.to_nchw(images)
    cost = forward.lower(state, jax_images).compile().cost_analysis()

    def torch_call() -> None:
        import torch

        with torch.inference_mode():
            torch_model(torch_images)

    times = harness.alternate(
        {
            "jax": lambda: jax.block_until_ready(forward(state, jax_images)),
            "torch": torch_call,
        },
        args.repeats,
    )
    return _row("inference", size, args.batch, cost["flops"], times)


def train_row(args: argparse.Namespace, size: int) -> dict:
    """XLA train-step FLOPs per image and the alternating training throughput at ``--batch``."""
    from bench_train import setup

    jax_step, torch_step, lower = setup(args.variant, size, args.batch, "float32")
    cost = lower().compile().cost_analysis()
    times = harness.alternate({"jax": jax_step, "torch": torch_step}, args.repeats)
    return _row("train", size, args.batch, cost["flops"], times)


def _row(mode: str, size: int, batch: int, flops: float, times: dict) -> dict:
    row = {"mode": mode, "size": size, "batch": batch, "xla_gflop_per_image": flops / batch / 1e9}
    for name in ("jax", "torch"):
        seconds = harness.summarize(times[name])
        row[f"{name}_images_per_s"] = batch / seconds["median_s"]
        row[f"{name}_achieved_gflop_s"] = flops / seconds["median_s"] / 1e9
    row["load"] = harness.load()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["inference", "train"])
    harness.add_common_arguments(parser)
    args = parser.parse_args()
    cpus = harness.start_both_frameworks(args)

    peak = matmul_peak(args.repeats)
    print(
        f"matmul {MATMUL_N}^3 float32: JAX {peak['jax']:.1f} GFLOP/s, "
        f"PyTorch {peak['torch']:.1f} GFLOP/s",
        flush=True,
    )
    peak_gflop_s = max(peak.values())
    rows, results = [], []
    for size in args.sizes:
        torch_gflop = torch_forward_flops(size, args.variant) / 1e9
        for mode in args.modes:
            r = inference_row(args, size) if mode == "inference" else train_row(args, size)
            gc.collect()
            r["torch_counter_forward_gflop_per_image"] = torch_gflop
            for name in ("jax", "torch"):
                r[f"{name}_fraction_of_peak"] = r[f"{name}_achieved_gflop_s"] / peak_gflop_s
            results.append(r)
            rows.append(
                [
                    mode,
                    size,
                    args.batch,
                    r["xla_gflop_per_image"],
                    torch_gflop,
                    r["jax_achieved_gflop_s"],
                    r["torch_achieved_gflop_s"],
                    f"{100 * r['jax_fraction_of_peak']:.1f}%",
                    f"{100 * r['torch_fraction_of_peak']:.1f}%",
                    r["load"][0],
                ]
            )
            print(
                f"{mode} {size}: {r['xla_gflop_per_image']:.2f} GFLOP/image (XLA), "
                f"JAX {r['jax_achieved_gflop_s']:.1f} GFLOP/s, "
                f"PyTorch {r['torch_achieved_gflop_s']:.1f} GFLOP/s",
                flush=True,
            )
    info = harness.machine_info()
    print(
        f"\nFLOPs and achieved FLOP/s, variant {args.variant}, {args.threads} threads "
        f"(CPUs {cpus}); peak = best {MATMUL_N}^3 matmul = {peak_gflop_s:.1f} GFLOP/s; "
        f"{info['cpu_model']}"
    )
    harness.print_table(
        [
            "mode",
            "size",
            "batch",
            "XLA GFLOP/img",
            "torch fwd GFLOP/img",
            "JAX GFLOP/s",
            "PyTorch GFLOP/s",
            "JAX % peak",
            "PyTorch % peak",
            "load 1m",
        ],
        rows,
    )
    path = harness.append_result(
        "flops",
        {
            "benchmark": "flops",
            "variant": args.variant,
            "threads": args.threads,
            "cpus": cpus,
            "repeats": args.repeats,
            "matmul_gflop_s": peak,
            "machine": info,
            "results": results,
        },
    )
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
