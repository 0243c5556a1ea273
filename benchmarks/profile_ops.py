"""Where the JAX training step (or inference) spends its time, per kind of XLA:CPU operation.

Traces ``--calls`` calls with ``jax.profiler`` (XLA:CPU emits one trace event per operation with
``--xla_cpu_enable_xprof_traceme=true``), reads the trace back with
``jax.profiler.ProfileData`` and sums the event durations by operation kind (the HLO name without
its ``.N`` suffix, e.g. ``ynn_fusion`` for YNNPACK convolutions and dots, ``pad_slice_fusion``),
over all threads, per call. Prints the ``--top`` kinds. ``--by contents`` also splits each kind by
what its fusions compute (read from the compiled HLO text), e.g. ``ynn_fusion | conv size=3x3
pad=1_1x1_1`` against ``ynn_fusion | multiply,reduce``.

    python benchmarks/profile_ops.py [--mode train] [--size 128] [--batch 16] [--calls 2] \\
        [--by kind|contents] [--threads N] [--variant s]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile
from pathlib import Path

import harness

# Events of the runtime around the operations, not operations.
RUNTIME_EVENT = re.compile(r"^\$|Thunk|Await|Pjit|^end: ")


def make_call(mode: str, size: int, batch: int, variant: str):
    """``(call, compiled_hlo)``: a blocking closure running one JAX train step or eval forward
    pass (float32) on a freshly initialised network (no PyTorch model is built: the weights do
    not change the timings), and a function returning the compiled HLO text of that call."""
    import jax

    from hpe_jax.models import init_model

    model = init_model(variant, seed=0)
    data = harness.synthetic_batch(batch, size)
    if mode == "inference":
        from bench_inference import jit_forward

        forward, state = jit_forward(model)
        images = jax.device_put(data["image"])
        return (
            lambda: jax.block_until_ready(forward(state, images)),
            lambda: forward.lower(state, images).compile().as_text(),
        )
    from bench_train import jit_train_step

    from configs.default import get_config

    config = get_config()
    config.model.variant = variant
    step, state, rest, batch_sharding = jit_train_step(config, model)
    arrays = {k: jax.device_put(v, batch_sharding) for k, v in data.items()}
    holder = {"state": state}

    def call() -> None:
        holder["state"], metrics = step(holder["state"], arrays, rest)
        jax.block_until_ready((holder["state"], metrics))

    return call, lambda: step.lower(holder["state"], arrays, rest).compile().as_text()


def fusion_contents(hlo_text: str) -> dict[str, str]:
    """For every fusion instruction of a compiled HLO module, what its fused computation holds:
    ``conv <window>`` for a convolution, else its sorted operation names (e.g.
    ``multiply,reduce``)."""
    from hpe_jax.compiler_options import fused_computations

    bodies = fused_computations(hlo_text)
    contents = {}
    for name, computation in re.findall(r"%([\w.\-]+) = \S+ fusion\(.*calls=%([\w.\-]+)", hlo_text):
        body = bodies.get(computation, "")
        window = re.search(r"convolution\(.*window=\{([^}]*)\}", body)
        ops = sorted(set(re.findall(r" = \S+ ([a-z][\w\-]*)\(", body)) - {"parameter"})
        contents[name] = f"conv {window.group(1)}" if window else ",".join(ops)
    return contents


def op_times(trace_dir: Path, contents: dict[str, str] | None = None) -> collections.Counter:
    """Nanoseconds per operation kind, summed over every event of the trace in ``trace_dir``;
    with ``contents`` (``fusion_contents``), per kind and contents of the fusion."""
    import jax

    (path,) = trace_dir.rglob("*.xplane.pb")
    totals: collections.Counter = collections.Counter()
    for plane in jax.profiler.ProfileData.from_file(str(path)).planes:
        for line in plane.lines:
            for event in line.events:
                if not RUNTIME_EVENT.search(event.name):
                    label = re.sub(r"\.\d+$", "", event.name)
                    if contents is not None and event.name in contents:
                        label = f"{label} | {contents[event.name]}"
                    totals[label] += event.duration_ns
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["train", "inference"], default="train")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--by",
        choices=["kind", "contents"],
        default="kind",
        help="group by operation kind, or by kind and the operations inside each fusion",
    )
    harness.add_common_arguments(parser)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
    ).strip()
    harness.configure_threads(args.threads)
    import jax

    call, compiled_hlo = make_call(args.mode, args.size, args.batch, args.variant)
    contents = fusion_contents(compiled_hlo()) if args.by == "contents" else None
    call()  # compile
    call()
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(args.calls):
                call()
        totals = op_times(Path(tmp), contents)
    per_call = {name: ns / args.calls / 1e6 for name, ns in totals.items()}
    total = sum(per_call.values())
    print(
        f"{args.mode}, {args.size}x{args.size}, batch {args.batch}, {args.threads} threads: "
        f"{total:.0f} ms of operation time per call (all threads)"
    )
    rows = sorted(per_call.items(), key=lambda item: -item[1])[: args.top]
    harness.print_table(
        ["operation kind", "ms per call", "share"],
        [[name, ms, f"{100 * ms / total:.1f}%"] for name, ms in rows],
    )


if __name__ == "__main__":
    main()
