"""Compiled train steps for TPU slices and GPU nodes, from this host (no accelerator needed).

For every target and dtype, ``python -m hpe_jax.aot`` (one process per compile) compiles the
train step at 224x224 with 32 images per device and, with ``--search``, finds the largest
per-device batch that fits: peak memory is affine in the batch, so it compiles at 64 too, predicts
the largest multiple of 8 that fits, and compiles that (stepping down by 8 while it does not fit).
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


def compile_once(target: str, dtype: str, batch: int, image_size: int) -> dict | None:
    """The ``--json`` report of one compile, or None where it does not compile."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "hpe_jax.aot", f"--topology={target}"]
        command += [f"--per-device-batch={batch}", f"--image-size={image_size}"]
        command += [f"--dtype={dtype}", f"--json={out}"]
        done = subprocess.run(command, capture_output=True, text=True)
        if not out.exists():
            print(f"{target} {dtype} batch {batch}: {done.stderr.strip()[-300:]}", file=sys.stderr)
            return None
        report = json.loads(out.read_text())
    with RESULTS.open("a") as results:
        results.write(json.dumps(report) + "\n")
    print(
        f"{target} {dtype} batch {batch}: peak {report['peak_bytes_per_device'] / GIB:.2f} GiB"
        f", compile {report['compile_seconds']} s",
        file=sys.stderr,
    )
    return report


def largest_batch(target: str, dtype: str, image_size: int, at_32: dict) -> dict | None:
    """The report at the largest per-device batch (a multiple of 8) that fits the device."""
    at_64 = compile_once(target, dtype, 64, image_size)
    if at_64 is None:
        return None
    per_image = (at_64["peak_bytes_per_device"] - at_32["peak_bytes_per_device"]) / 32
    fixed = at_32["peak_bytes_per_device"] - 32 * per_image
    batch = int((at_32["device_memory_bytes"] - fixed) / per_image) // 8 * 8
    while batch > 64:
        report = compile_once(target, dtype, batch, image_size)
        if report is not None and report["fits"]:
            return report
        batch -= 8
    return at_64 if at_64["fits"] else None


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
    rows = []
    for target in args.targets:
        for dtype in args.dtypes:
            report = compile_once(target, dtype, args.batch, args.image_size)
            if report is None:
                rows.append(f"| {target} | {dtype} | {args.batch} | does not compile |")
                continue
            rows.append(row(report, args.model_gflop))
            if args.search:
                best = largest_batch(target, dtype, args.image_size, report)
                if best is not None:
                    rows.append(row(best, args.model_gflop))
    print(
        "| target | dtype | batch/device | peak GiB / device GiB | GFLOP/device/step | "
        "GFLOP/image | step floor ms | images/s/device ceiling | collectives | compile s |"
    )
    print("|" + "---|" * 10)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
