"""Ahead-of-time compilation of the train step for TPU slices and GPU nodes, on any host.

    python -m hpe_jax.aot --topology v5e-8 --per-device-batch 32 --image-size 224 \\
        --dtype bfloat16 [--variant s] [--hosts H] [--json PATH] [--dump-hlo PATH]

Compiles the real train step (``make_train_step``: the kernels of the target platform, the batch
split over all devices, the state replicated) for the devices of a topology description, with no
accelerator present, and prints per-device memory against the chip's memory, FLOPs per device per
step (where the compiler reports them), the count of each collective and the compile time.
Needs the compiler of the target: the ``tpu`` extra (libtpu) or the ``cuda`` extra (the local-CUDA
plugin, compiling against the GPU target configs shipped in ``hpe_jax/gpu_targets``).

The optimiser and loss settings come from ``--config`` (default: the repository's
``configs/default.py``); the flags set the network variant, dtype, image size and batch.

Topology names: ``v5e-N`` / ``v6e-N`` (N chips), ``v4-N`` / ``v5p-N`` / ``tpu7x-N`` (N
TensorCores, Google Cloud's naming), ``h100xN`` / ``a100xN`` (N GPUs per host; ``--hosts`` for
several nodes).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import os
import re
import sys
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import ml_collections

from hpe_jax.cli import run_cli
from hpe_jax.errors import UserError

GIB = 1024**3
# Chip shapes of a slice by its chip count (Cloud TPU's 2D and 3D slice shapes).
_SHAPES_2D = {
    1: "1x1",
    4: "2x2",
    8: "2x4",
    16: "4x4",
    32: "4x8",
    64: "8x8",
    128: "8x16",
    256: "16x16",
}
_SHAPES_3D = {
    4: "2x2x1",
    8: "2x2x2",
    16: "2x2x4",
    32: "2x4x4",
    64: "4x4x4",
    128: "4x4x8",
    256: "4x8x8",
    512: "8x8x8",
}
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.py"
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


@dataclasses.dataclass(frozen=True)
class Chip:
    """Published figures of one accelerator device: HBM bytes and dense bf16 FLOP/s."""

    memory_bytes: int
    peak_bf16_flops: float
    # How the topology name counts: chips, or TensorCores (two per chip).
    cores_per_unit: int
    shapes: dict[int, str]
    platform: str


CHIPS = {
    "v5e": Chip(16 * GIB, 197e12, 1, _SHAPES_2D, "tpu"),
    "v6e": Chip(32 * GIB, 918e12, 1, _SHAPES_2D, "tpu"),
    "v4": Chip(32 * GIB, 275e12, 2, _SHAPES_3D, "tpu"),
    "v5p": Chip(95 * GIB, 459e12, 2, _SHAPES_3D, "tpu"),
    "tpu7x": Chip(192 * GIB, 2307e12, 2, _SHAPES_3D, "tpu"),
    "h100": Chip(84_942_979_072, 989e12, 1, {}, "cuda"),
    "a100": Chip(85_100_068_864, 312e12, 1, {}, "cuda"),
}
GPU_TARGET_FILES = {"h100": "h100_sxm.txtpb", "a100": "a100_sxm_80.txtpb"}


class AotError(UserError):
    """A topology, option or compiler that cannot be used; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A named slice or node: its chip, the topology string of ``get_topology_desc`` and the
    number of devices JAX sees."""

    name: str
    chip_name: str
    chip: Chip
    topology: str
    num_devices: int


def parse_topology(name: str, hosts: int = 1) -> Target:
    """The target of a name like ``v5e-8``, ``v5p-8``, ``tpu7x-8`` or ``h100x8`` (``hosts``
    nodes of a GPU target). Raises AotError naming the accepted forms."""
    if hosts < 1:
        raise AotError(f"--hosts must be 1 or more, got {hosts}")
    gpu = re.fullmatch(r"(h100|a100)x(\d+)", name)
    if gpu:
        chip_name, per_host = gpu[1], int(gpu[2])
        if not 1 <= per_host <= 8:
            raise AotError(f"{name}: 1 to 8 GPUs per host, got {per_host}")
        topology = f"1x{hosts}x{per_host}"
        return Target(name, chip_name, CHIPS[chip_name], topology, hosts * per_host)
    tpu = re.fullmatch(r"(v5e|v6e|v4|v5p|tpu7x)-(\d+)", name)
    if not tpu:
        raise AotError(
            f"unknown topology {name!r}: expected v5e-N, v6e-N (chips), v4-N, v5p-N, tpu7x-N "
            "(TensorCores) or h100xN, a100xN (GPUs per host)"
        )
    if hosts != 1:
        raise AotError("--hosts is for GPU targets; a TPU name already counts every chip")
    chip_name, count = tpu[1], int(tpu[2])
    chip = CHIPS[chip_name]
    chips, odd = divmod(count, chip.cores_per_unit)
    if odd or chips not in chip.shapes:
        raise AotError(
            f"{name}: no {chip_name} slice of {count}; known sizes: "
            + ", ".join(f"{chip_name}-{n * chip.cores_per_unit}" for n in chip.shapes)
        )
    shape = chip.shapes[chips]
    # tpu7x exposes each of a chip's two TensorCores as a device.
    devices = chips * (2 if chip_name == "tpu7x" else 1)
    return Target(name, chip_name, chip, f"{chip_name}:{shape}", devices)


def topology_devices(target: Target) -> list[Any]:
    """The devices of ``target``'s topology description (no accelerator needed)."""
    from jax.experimental import topologies

    try:
        if target.chip.platform == "tpu":
            desc = topologies.get_topology_desc(platform="tpu", topology_name=target.topology)
        else:
            os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
            spec = resources.files("hpe_jax") / "gpu_targets" / GPU_TARGET_FILES[target.chip_name]
            desc = topologies.get_topology_desc(
                platform="cuda", topology=target.topology, target_config=spec.read_text()
            )
    except Exception as err:  # the plugins raise RuntimeError, ValueError, NotImplementedError
        extra = "tpu" if target.chip.platform == "tpu" else "cuda"
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise AotError(
            f"cannot describe {target.name} ({target.topology}): {first} (is the '{extra}' "
            f"extra installed? pip install 'hpe-jax[{extra}]')"
        ) from err
    return list(desc.devices)


def count_collectives(hlo_text: str) -> dict[str, int]:
    """How many of each collective (``COLLECTIVES``; asynchronous ``-start`` forms counted with
    their op) the text of a compiled HLO module holds."""
    ops = re.findall(r"= \S+ ([a-z\-]+?)(?:-start)?\(", hlo_text)
    found = Counter(op for op in ops if op in COLLECTIVES)
    return {op: found.get(op, 0) for op in COLLECTIVES}


def load_config(path: str | Path) -> ml_collections.ConfigDict:
    """The ``get_config()`` of a training config file (``configs/*.py``)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"_aot_config_{path.stem}", path)
    if not path.is_file() or spec is None or spec.loader is None:
        raise AotError(f"config file {path} does not exist (expected a configs/*.py file)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def compile_report(
    target: Target,
    config: ml_collections.ConfigDict,
    *,
    per_device_batch: int,
    image_size: int,
    dtype: str,
    variant: str = "s",
    dump_hlo: str | Path | None = None,
) -> dict[str, Any]:
    """Compiles the train step of training config ``config`` with network ``variant`` for
    ``target`` at ``per_device_batch`` images of ``image_size`` pixels per device, compute
    ``dtype`` ('float32' / 'bfloat16'); returns the report (keys as ``--json`` writes them; bytes
    and FLOPs per device per step). The config, with these values set, is checked
    (``check_train_config``, without devices, data or ``init_from``) before anything is
    compiled."""
    import jax

    from hpe_jax.config_check import check_train_config
    from hpe_jax.models import get_config as get_model_config
    from hpe_jax.models.kernels import grouped_convolutions
    from hpe_jax.train_state import make_train_step

    config = copy.deepcopy(config)
    config.model = get_model_config(variant)
    config.model.dtype = dtype
    config.data.image_size = image_size
    config.batch_size = per_device_batch * target.num_devices
    config.init_from = ""  # the step compiles without the weights; the host may not hold them
    check_train_config(config, runtime=False)
    devices = topology_devices(target)
    mesh = jax.sharding.Mesh(devices, ("data",))
    program = make_train_step(config, mesh, total_steps=1000)
    start = time.perf_counter()
    try:
        lowered = program.step.lower(program.state, program.batch, program.rest)
        compiled = lowered.compile()
    except Exception as err:  # XLA reports every compile failure as its own runtime error
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise AotError(f"{target.name}: the train step does not compile: {first}") from err
    seconds = time.perf_counter() - start
    hlo = compiled.as_text()
    if dump_hlo:
        Path(dump_hlo).write_text(hlo)
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0] if cost else None
    peak = int(getattr(memory, "peak_memory_in_bytes", 0)) or int(
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes
    )
    return {
        "topology": target.name,
        "platform": target.chip.platform,
        "devices": len(devices),
        "per_device_batch": per_device_batch,
        "image_size": image_size,
        "dtype": dtype,
        "variant": variant,
        "peak_bytes_per_device": peak,
        "temp_bytes_per_device": int(memory.temp_size_in_bytes),
        "argument_bytes_per_device": int(memory.argument_size_in_bytes),
        "device_memory_bytes": target.chip.memory_bytes,
        "flops_per_device": float(cost["flops"]) if cost and "flops" in cost else None,
        "collectives": count_collectives(hlo),
        "grouped_convolutions": len(grouped_convolutions(hlo)),
        "compile_seconds": round(seconds, 1),
        "fits": peak <= target.chip.memory_bytes,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned lines for a terminal."""
    flops = report["flops_per_device"]
    collectives = ", ".join(f"{k} {v}" for k, v in report["collectives"].items() if v) or "none"
    lines = [
        ("target", f"{report['topology']} ({report['devices']} {report['platform']} devices)"),
        (
            "step",
            f"{report['per_device_batch']} x {report['image_size']}px per device, "
            f"{report['dtype']}, variant {report['variant']}",
        ),
        (
            "memory/device",
            f"peak {report['peak_bytes_per_device'] / GIB:.2f} GiB of "
            f"{report['device_memory_bytes'] / GIB:.0f} GiB (arguments "
            f"{report['argument_bytes_per_device'] / GIB:.2f}, temporaries "
            f"{report['temp_bytes_per_device'] / GIB:.2f})",
        ),
        ("FLOPs/device", f"{flops / 1e9:.1f} GFLOP per step" if flops else "not reported"),
        ("collectives", collectives),
        ("grouped convs", str(report["grouped_convolutions"])),
        ("compile", f"{report['compile_seconds']:.1f} s"),
        ("fits", "yes" if report["fits"] else "NO"),
    ]
    return "\n".join(f"{k:<14} {v}" for k, v in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hpe_jax.aot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--topology", required=True, help="v5e-8, v5p-8, h100x8, ...")
    parser.add_argument("--per-device-batch", type=int, required=True)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--variant", choices=("s", "m", "l"), default="s")
    parser.add_argument("--hosts", type=int, default=1, help="GPU nodes (GPU targets only)")
    parser.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help="training config file (configs/*.py)"
    )
    parser.add_argument("--json", help="write the report as JSON here")
    parser.add_argument("--dump-hlo", help="write the compiled HLO text here")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_cli(lambda: _report(args), verbose=args.verbose)


def _report(args: argparse.Namespace) -> int:
    """Compiles and reports the step ``args`` names; 1 when it does not fit a device."""
    if args.per_device_batch < 1 or args.image_size < 32:
        raise AotError("--per-device-batch must be >= 1 and --image-size >= 32")
    target = parse_topology(args.topology, args.hosts)
    report = compile_report(
        target,
        load_config(args.config),
        per_device_batch=args.per_device_batch,
        image_size=args.image_size,
        dtype=args.dtype,
        variant=args.variant,
        dump_hlo=args.dump_hlo,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    if not report["fits"]:
        print(
            f"error: {target.name}: the step needs more memory than a device has", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
