"""Peak host memory of inference and of the training step, JAX against PyTorch.

Every measurement runs in its own subprocess that imports only its framework. The child builds
the network (JAX: ``init_model``; PyTorch: ``build_reference_model``; same architecture, so the
same parameter count), runs one warm-up call (JAX: compilation included), then resets the
kernel's peak-RSS counter (``/proc/self/clear_refs``) and runs ``--repeats`` more calls. It
reports, from ``/proc/self/status``: the resident set after building the model (``model_mb``),
the peak including the warm-up (``peak_with_warmup_mb``, VmHWM; for JAX that includes XLA's
compiler) and the steady peak of the timed calls (``steady_peak_mb``). JAX children also report
XLA's own buffer plan (``compiled.memory_analysis()``: arguments, outputs, temporaries).
Prints a table and appends one JSON line to ``benchmarks/results/memory.jsonl``.

    python benchmarks/bench_memory.py [--sizes 224] [--batch 16] [--modes inference train] \\
        [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import harness

MIB = 1 << 20


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(f"{key} not in /proc/self/status")


def _reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _jax_child(mode: str, size: int, batch: int, dtype: str, variant: str) -> tuple:
    import jax
    from bench_inference import jit_forward
    from bench_train import jit_train_step

    from configs.default import get_config
    from hpe_jax.models import init_model

    data = harness.synthetic_batch(batch, size)
    model = init_model(variant, seed=0, dtype=dtype)
    if mode == "inference":
        forward, state = jit_forward(model)
        images = jax.device_put(data["image"])
        plan = forward.lower(state, images).compile().memory_analysis()

        def call() -> None:
            jax.block_until_ready(forward(state, images))

    else:
        config = get_config()
        config.model.variant, config.model.dtype = variant, dtype
        step, state, rest, sharding = jit_train_step(config, model)
        batch_arrays = {k: jax.device_put(v, sharding) for k, v in data.items()}
        plan = step.lower(state, batch_arrays, rest).compile().memory_analysis()
        holder = {"state": state}

        def call() -> None:
            holder["state"], metrics = step(holder["state"], batch_arrays, rest)
            jax.block_until_ready((holder["state"], metrics))

    del model
    xla_plan = {
        "xla_argument_mb": plan.argument_size_in_bytes / MIB,
        "xla_output_mb": plan.output_size_in_bytes / MIB,
        "xla_temp_mb": plan.temp_size_in_bytes / MIB,
    }
    return call, xla_plan


def _torch_child(mode: str, size: int, batch: int, variant: str) -> tuple:
    import torch

    from hpe_jax.testing.torch_reference import (
        build_reference_model,
        make_torch_optimizer,
        torch_train_step,
    )

    data = harness.synthetic_batch(batch, size)
    torch.manual_seed(0)
    model = build_reference_model(variant)
    images = harness.to_nchw(data["image"])
    if mode == "inference":
        model.eval()

        def call() -> None:
            with torch.inference_mode():
                model(images)

    else:
        optimizer = make_torch_optimizer(model)
        labels = [torch.from_numpy(data[k]).long() for k in ("coarse", "shift")]
        angles = torch.from_numpy(data["angles"])

        def call() -> None:
            torch_train_step(model, optimizer, images, *labels, angles)

    return call, {}


def child(args: argparse.Namespace) -> None:
    """One measurement; prints one JSON line."""
    harness.configure_threads(args.threads)
    framework, mode, size, batch = args.child
    size, batch = int(size), int(batch)
    if framework == "jax":
        call, extra = _jax_child(mode, size, batch, args.dtype, args.variant)
    else:
        harness.set_torch_threads(args.threads)
        call, extra = _torch_child(mode, size, batch, args.variant)
    model_mb = _status_mb("VmRSS")
    call()
    peak_with_warmup = _status_mb("VmHWM")
    reset = _reset_peak()
    for _ in range(args.repeats):
        call()
    result = {
        "framework": framework,
        "mode": mode,
        "size": size,
        "batch": batch,
        "dtype": args.dtype if framework == "jax" else "float32",
        "model_mb": model_mb,
        "peak_with_warmup_mb": peak_with_warmup,
        "steady_peak_mb": _status_mb("VmHWM") if reset else None,
        "rss_after_mb": _status_mb("VmRSS"),
        **extra,
    }
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224])
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--modes", nargs="+", default=["inference", "train"])
    parser.add_argument("--frameworks", nargs="+", default=["jax", "torch"])
    parser.add_argument("--dtype", default="float32", help="JAX compute dtype")
    parser.add_argument("--repeats", type=int, default=2)
    harness.add_common_arguments(parser)
    parser.add_argument("--child", nargs=4, metavar=("FRAMEWORK", "MODE", "SIZE", "BATCH"))
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    results, rows = [], []
    for size in args.sizes:
        for batch in args.batch:
            for mode in args.modes:
                for framework in args.frameworks:
                    cmd = [
                        sys.executable,
                        __file__,
                        "--child",
                        framework,
                        mode,
                        str(size),
                        str(batch),
                        f"--dtype={args.dtype}",
                        f"--repeats={args.repeats}",
                        f"--threads={args.threads}",
                        f"--variant={args.variant}",
                    ]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode or not lines:
                        raise RuntimeError(
                            f"child {' '.join(cmd)} failed ({proc.returncode}):\n"
                            f"{proc.stderr[-3000:]}"
                        )
                    r = json.loads(lines[-1][len("RESULT ") :])
                    results.append(r)
                    rows.append(
                        [
                            framework,
                            mode,
                            size,
                            batch,
                            r["model_mb"],
                            r["peak_with_warmup_mb"],
                            r["steady_peak_mb"],
                            r.get("xla_temp_mb", "-"),
                        ]
                    )
                    print(
                        f"{framework} {mode} {size} batch {batch}: steady peak "
                        f"{r['steady_peak_mb']:.0f} MiB, with warm-up "
                        f"{r['peak_with_warmup_mb']:.0f} MiB",
                        flush=True,
                    )
    harness.configure_threads(args.threads)
    info = harness.machine_info()
    print(f"\npeak host memory (MiB), variant {args.variant}, JAX dtype {args.dtype}")
    harness.print_table(
        [
            "framework",
            "mode",
            "size",
            "batch",
            "after model build",
            "peak incl. warm-up",
            "steady peak",
            "XLA temp plan",
        ],
        rows,
    )
    path = harness.append_result(
        "memory",
        {
            "benchmark": "memory",
            "variant": args.variant,
            "threads": args.threads,
            "jax_dtype": args.dtype,
            "repeats": args.repeats,
            "machine": info,
            "results": results,
        },
    )
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
