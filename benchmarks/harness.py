"""Shared set-up of the JAX-vs-PyTorch benchmarks: thread pinning, the two networks with the same
weights, synthetic batches, alternating timers, machine facts and the jsonl result files.

Call ``configure_threads`` BEFORE importing jax or torch (it sets the CPU affinity and the
OpenMP/MKL environment that both libraries read when they start). Thread counts are made equal
this way:

- XLA:CPU sizes its intra-op thread pool from the CPUs the process may run on
  (``sched_getaffinity``), so the process is pinned to the first ``n`` allowed CPUs;
- PyTorch gets ``torch.set_num_threads(n)`` (and ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = n).

``configure_threads`` also applies ``hpe_jax.host_memory.retain_freed_host_memory`` (glibc keeps
freed memory for reuse), as ``train_main.py`` and ``eval_main.py`` do; it acts on the whole
process, so the JAX and PyTorch measurements of one run share it (``alternate_in_processes``
applies it in each worker). Set ``HPE_BENCH_DEFAULT_MALLOC=1`` to measure with glibc's default
allocation instead.

Images are NHWC for JAX and the same values transposed to NCHW for PyTorch, float32,
standard-normal (the networks' inputs are ImageNet-normalised, so of that scale).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:  # configs/ is a folder at the repo root, not a package
    sys.path.insert(0, str(REPO))


def default_threads() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def configure_threads(n: int) -> list[int]:
    """Pins this process to the first ``n`` allowed CPUs, sets the OpenMP/MKL thread counts and
    the host allocation (module docstring); returns the CPU ids. Must run before jax and torch
    are imported."""
    if "jax" in sys.modules or "torch" in sys.modules:
        raise RuntimeError("configure_threads must run before jax or torch is imported")
    cpus = sorted(os.sched_getaffinity(0))
    if not 1 <= n <= len(cpus):
        raise ValueError(f"--threads must be in [1, {len(cpus)}] (allowed CPUs {cpus}), got {n}")
    os.sched_setaffinity(0, cpus[:n])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if os.environ.get("HPE_BENCH_DEFAULT_MALLOC") != "1":
        from hpe_jax.host_memory import retain_freed_host_memory

        retain_freed_host_memory()
    return cpus[:n]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--threads`` (CPUs to pin to, both frameworks) and ``--variant`` (network size)."""
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--variant", default="s", choices=["s", "m", "l"])


def start_both_frameworks(args: argparse.Namespace) -> list[int]:
    """``configure_threads(args.threads)``, then PyTorch's thread count; returns the CPU ids."""
    cpus = configure_threads(args.threads)
    set_torch_threads(args.threads)
    return cpus


def set_torch_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` (call after ``configure_threads``)."""
    import torch

    torch.set_num_threads(n)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ('unknown' when absent)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The SIMD flags that matter for these kernels (avx2, fma, avx512*, amx*)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def machine_info() -> dict[str, Any]:
    """Host, CPU model and count, library versions, XLA_FLAGS and the current load average."""
    import jax
    import jaxlib
    import numpy as np
    import torch

    info = {
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "jax_backend": jax.default_backend(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_malloc": "default"
        if os.environ.get("HPE_BENCH_DEFAULT_MALLOC") == "1"
        else "retain_freed_host_memory",
        "git_commit": _git_commit(),
    }
    try:
        import flax

        info["flax"] = flax.__version__
    except ImportError:
        pass
    return info


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load() -> list[float]:
    """1, 5 and 15 minute load averages (other processes compete for these CPUs)."""
    return [round(v, 2) for v in os.getloadavg()]


def reference_pair(variant: str = "s", seed: int = 0, **config_overrides: Any):
    """The original network in PyTorch (``hpe_jax/testing/torch_reference.py``, torch default
    init with ``seed``) and the JAX network with the SAME weights (``load_torch_state_dict``).

    Returns ``(torch_model, jax_model)``, both in training mode. ``config_overrides`` go to the
    JAX model's config (e.g. ``dtype='bfloat16'``).
    """
    import torch

    from hpe_jax.convert_torch import load_torch_state_dict
    from hpe_jax.models import init_model
    from hpe_jax.testing.torch_reference import build_reference_model

    torch.manual_seed(seed)
    torch_model = build_reference_model(variant)
    jax_model = init_model(variant, seed=seed, **config_overrides)
    load_torch_state_dict(jax_model, torch_model.state_dict())
    jax_model.train()
    return torch_model, jax_model


def synthetic_batch(batch: int, size: int, seed: int = 0) -> dict[str, Any]:
    """A training batch as numpy arrays: image (B, S, S, 3) float32 NHWC, angles (B, 3) degrees
    uniform in [-90, 90) (yaw, pitch, roll), and their coarse / shift bins (B, 3) int32.

    The bins use MODEL.md's formula (``floor((a + 100) / 20)``, ``trunc(a - bin start)``) in
    numpy rather than ``hpe_jax.pose.encode_bins``, so that PyTorch-only benchmark processes do
    not import jax (their memory is measured).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    image = rng.standard_normal((batch, size, size, 3)).astype(np.float32)
    angles = rng.uniform(-90.0, 90.0, (batch, 3)).astype(np.float32)
    coarse = np.floor((angles + 100.0) / 20.0).astype(np.int32)
    shift = np.trunc(angles - (20.0 * coarse - 100.0)).astype(np.int32)
    return {"image": image, "coarse": coarse, "shift": shift, "angles": angles}


def to_nchw(image: Any) -> Any:
    """A (B, H, W, C) numpy batch as a contiguous (B, C, H, W) torch tensor."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2)))


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict:
    """Runs each function ``warmup`` times, then ``repeats`` rounds in which every function runs
    once, in turn (so that load changes hit all of them alike). Each function must block until
    its work is done. Returns ``{name: {"wall": [s, ...], "cpu": [s, ...]}}``: wall-clock seconds
    per call and this process's CPU seconds (user + system, all threads) per call."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            cpu, start = time.process_time(), time.perf_counter()
            fn()
            times[name]["wall"].append(time.perf_counter() - start)
            times[name]["cpu"].append(time.process_time() - cpu)
    return times


def alternate_in_processes(
    make_fns: Callable[..., dict[str, Callable[[], Any]]],
    make_args: tuple,
    names: list[str],
    threads: int,
    repeats: int,
    warmup: int = 1,
) -> tuple[dict, dict[str, float]]:
    """``alternate``, with each function in a worker process of its own.

    Worker ``name`` (started with ``spawn``, one after the other, each set up before the next
    starts) runs ``configure_threads(threads)``, builds ``make_fns(*make_args)[name]`` and calls
    it ``warmup`` times; then this process asks the workers for one call each, in turn,
    ``repeats`` rounds. ``make_fns`` must be a module-level function (it is pickled by name).
    Why: JAX and PyTorch in one process share one glibc heap (``retain_freed_host_memory``), and
    after a PyTorch step XLA's multi-GB temporary buffer of the next call often no longer fits
    in the freed holes, so that call faults in fresh pages (BENCHMARKS.md, "Method"), a cost no
    single-framework program pays.

    Returns ``(times, first_call_s)``: ``alternate``'s ``{name: {"wall": [...], "cpu": [...]}}``
    (the CPU seconds are the worker's) and each worker's first call in seconds (for JAX:
    compilation included).
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers, first_call_s = {}, {}
    try:
        for name in names:
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_alternation_worker,
                args=(make_fns, make_args, name, threads, warmup, child_end),
                daemon=True,
            )
            process.start()
            child_end.close()
            workers[name] = (process, parent_end)
            first_call_s[name] = _worker_reply(name, parent_end)
        times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
        for _ in range(repeats):
            for name, (_, conn) in workers.items():
                conn.send("call")
                wall, cpu = _worker_reply(name, conn)
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
    finally:
        for process, conn in workers.values():
            with contextlib.suppress(OSError):
                conn.send("stop")
            process.join(timeout=60)
    return times, first_call_s


def _worker_reply(name: str, conn: Any) -> Any:
    try:
        status, value = conn.recv()
    except EOFError:
        raise RuntimeError(f"benchmark worker {name!r} exited without replying") from None
    if status == "error":
        raise RuntimeError(f"benchmark worker {name!r} failed:\n{value}")
    return value


def _alternation_worker(
    make_fns: Callable[..., dict[str, Callable[[], Any]]],
    make_args: tuple,
    name: str,
    threads: int,
    warmup: int,
    conn: Any,
) -> None:
    """The body of one ``alternate_in_processes`` worker."""
    import traceback

    try:
        configure_threads(threads)
        set_torch_threads(threads)
        fn = make_fns(*make_args)[name]
        start = time.perf_counter()
        fn()
        first_call_s = time.perf_counter() - start
        for _ in range(warmup - 1):
            fn()
        conn.send(("ok", first_call_s))
        while conn.recv() == "call":
            cpu, start = time.process_time(), time.perf_counter()
            fn()
            conn.send(("ok", (time.perf_counter() - start, time.process_time() - cpu)))
    except Exception:
        conn.send(("error", traceback.format_exc()))


def summarize(timings: dict[str, list[float]]) -> dict[str, float]:
    """Median, min and max wall-clock seconds and median CPU seconds of ``alternate``'s lists."""
    wall = timings["wall"]
    return {
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "max_s": max(wall),
        "median_cpu_s": statistics.median(timings["cpu"]),
    }


def compare(times: dict, batch: int) -> dict[str, Any]:
    """``alternate``'s ``jax`` and ``torch`` timings of calls on ``batch`` images: their
    summaries, images/s from the median calls, the JAX/PyTorch throughput ratio (> 1: JAX
    is faster) of the medians and of the best calls, and each framework's cores kept busy (median
    CPU seconds over median wall seconds of a call; at most ``--threads``)."""
    jax_s, torch_s = summarize(times["jax"]), summarize(times["torch"])
    return {
        "jax": jax_s,
        "torch": torch_s,
        "jax_images_per_s": batch / jax_s["median_s"],
        "torch_images_per_s": batch / torch_s["median_s"],
        "ratio_jax_over_torch": torch_s["median_s"] / jax_s["median_s"],
        "ratio_best_of": torch_s["min_s"] / jax_s["min_s"],
        "jax_cores_busy": jax_s["median_cpu_s"] / jax_s["median_s"],
        "torch_cores_busy": torch_s["median_cpu_s"] / torch_s["median_s"],
    }


COMPARISON_HEADERS = [
    "JAX img/s",
    "PyTorch img/s",
    "JAX/PyTorch",
    "JAX cores busy",
    "PyTorch cores busy",
]


def comparison_cells(result: dict[str, Any]) -> list[float]:
    """The table cells of ``compare``'s result, in the order of ``COMPARISON_HEADERS``."""
    return [
        result["jax_images_per_s"],
        result["torch_images_per_s"],
        result["ratio_jax_over_torch"],
        result["jax_cores_busy"],
        result["torch_cores_busy"],
    ]


def append_result(name: str, record: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Appends ``record`` (with a UTC date) as one JSON line to ``<results_dir>/<name>.jsonl``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.jsonl"
    line = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), **record}
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    return path


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Prints a plain aligned table."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
