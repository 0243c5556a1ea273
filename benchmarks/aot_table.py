"""Compiled train steps for TPU slices and GPU nodes, from this host (no accelerator needed).

For every target and dtype, ``python -m hpe_jax.aot`` (one process per compile) compiles the
train step at 224x224 with 32 images per device and, with ``--search``, finds the largest
per-device batch that compiles and fits, to within 1/8: it compiles at 64 too and bisects between
64 and the batch that the peak memory at 32 and 64 (affine in the batch) predicts to fill the
device, since the compiler may refuse a batch that would fit.
Prints a markdown table (peak memory per device, GFLOP per device per step, and the step-time floor
and images/s ceiling per device those FLOPs give at the chip's dense bf16 peak) and appends every
report to ``benchmarks/results/aot.jsonl``. Where the compiler reports no FLOPs (GPU targets), the
model's own count (``--model-gflop`` per image per train step) times the batch is used, marked *.

    python benchmarks/aot_table.py --targets h100x8 a100x8 v5e-8 [--dtypes bfloat16 float32] \\
        [--batch 32] [--search] [--image-size 224]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hpe_jax.aot import CHIPS, GIB, parse_topology

RESULTS = Path(__file__).resolve().parent / "results" / "aot.jsonl"


def compile_once(target: str, dtype: str, batch: int, image_size: int) -> dict:
    """The ``--json`` report of one compile; where it does not compile, ``{"error": reason}``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "hpe_jax.aot", f"--topology={target}"]
        command += [f"--per-device-batch={batch}", f"--image-size={image_size}"]
        command += [f"--dtype={dtype}", f"--json={out}"]
        done = subprocess.run(command, capture_output=True, text=True)
        if not out.exists():
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{target} {dtype} batch {batch}: {reason[:300]}", file=sys.stderr)
            return {"error": reason}
        report = json.loads(out.read_text())
    with RESULTS.open("a") as results:
        results.write(json.dumps(report) + "\n")
    peak = report["peak_bytes_per_device"] / GIB
    seconds = report["compile_seconds"]
    print(
        f"{target} {dtype} batch {batch}: peak {peak:.2f} GiB, compile {seconds} s", file=sys.stderr
    )
    return report


def largest_batch(target: str, dtype: str, image_size: int, at_32: dict) -> tuple[dict, str]:
    """The report at the largest per-device batch (a multiple of 8) found to compile and fit,
    to within 1/8 of itself, and why the next larger batch tried does not.

    Peak memory is affine in the batch (fitted from batches 32 and 64); the batch it predicts
    to fill the device bounds a bisection, since the compiler may refuse a batch that fits."""
    best = compile_once(target, dtype, 64, image_size)
    if "error" in best or not best["fits"]:
        return at_32, best.get("error", "batch 64 does not fit")
    per_image = (best["peak_bytes_per_device"] - at_32["peak_bytes_per_device"]) / 32
    fixed = at_32["peak_bytes_per_device"] - 32 * per_image
    high = int((at_32["device_memory_bytes"] - fixed) / per_image) // 8 * 8 + 8
    why = f"batch {high}: memory predicted over the device's"
    while high - best["per_device_batch"] > max(8, best["per_device_batch"] // 8):
        batch = (best["per_device_batch"] + high) // 16 * 8
        report = compile_once(target, dtype, batch, image_size)
        if "error" not in report and report["fits"]:
            best = report
        else:
            high = batch
            why = f"batch {batch}: " + report.get("error", "does not fit")
    return best, why


def row(report: dict, model_gflop: float) -> str:
    """One markdown table row of a report."""
    chip = CHIPS[parse_topology(report["topology"].split("/")[0]).chip_name]
    flops = report["flops_per_device"]
    estimated = flops is None
    if estimated:
        flops = model_gflop * 1e9 * report["per_device_batch"]
    floor = flops / chip.peak_bf16_flops
    ceiling = report["per_device_batch"] / floor
    mark = "*" if estimated else ""
    collectives = ", ".join(f"{k} {v}" for k, v in report["collectives"].items() if v) or "none"
    return (
        f"| {report['topology']} | {report['dtype']} | {report['per_device_batch']} | "
        f"{report['peak_bytes_per_device'] / GIB:.2f} / {chip.memory_bytes / GIB:.0f} | "
        f"{flops / 1e9:.0f}{mark} | {flops / 1e9 / report['per_device_batch']:.1f}{mark} | "
        f"{floor * 1e3:.1f} | {ceiling:.0f} | {collectives} | {report['compile_seconds']:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", required=True)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--search", action="store_true")
    parser.add_argument("--model-gflop", type=float, default=15.4)
    args = parser.parse_args()
    RESULTS.parent.mkdir(exist_ok=True)
    rows, limits = [], []
    for target in args.targets:
        for dtype in args.dtypes:
            report = compile_once(target, dtype, args.batch, args.image_size)
            if "error" in report:
                rows.append(f"| {target} | {dtype} | {args.batch} | {report['error']} |")
                continue
            rows.append(row(report, args.model_gflop))
            if args.search:
                best, why = largest_batch(target, dtype, args.image_size, report)
                rows.append(row(best, args.model_gflop))
                limits.append(f"{target} {dtype}: largest {best['per_device_batch']}; {why}")
    print(
        "| target | dtype | batch/device | peak GiB / device GiB | GFLOP/device/step | "
        "GFLOP/image | step floor ms | images/s/device ceiling | collectives | compile s |"
    )
    print("|" + "---|" * 10)
    print("\n".join(rows))
    print("\n".join(f"- {limit}" for limit in limits))


if __name__ == "__main__":
    main()
