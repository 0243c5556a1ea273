"""The network as an accelerator runs it: parity with the CPU program and train-step speed.

Two steps, each its own process (``benchmarks/device_check.sh`` runs both):

    JAX_PLATFORMS=cpu python benchmarks/device_check.py reference --out REF.npz
    python benchmarks/device_check.py device --reference REF.npz [--size 224] [--batch 32]

``reference`` builds the network (``init_model('s', seed=0)``, the ``"cpu"`` kernel set), runs it in
inference mode on a fixed batch at float32 with the highest matmul precision, and saves the
parameters, the batch and the six logit arrays. ``device`` loads those parameters into the
``"xla"`` kernel set on the default backend (the GPU), reports the largest logit difference from
the saved CPU logits, then times one training step (median of ``--steps`` after two warm-up
steps) of JAX at float32 and bfloat16 against the original PyTorch network on the same device in
eager float32 and under bfloat16 autocast, same weights and synthetic batch. Prints a table and
appends it as one JSON line to ``benchmarks/results/device_check.jsonl``. ``--smoke`` runs both
steps small (64 px, batch 2) on whatever backend is present, to check the script itself.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import harness
import jax
import numpy as np

PARITY_BATCH = 2
PARITY_TOLERANCE = 1e-4


def flat_state(model) -> dict[str, np.ndarray]:
    """Every parameter and BN statistic of ``model`` as a numpy array, by its path."""
    from flax import nnx

    from hpe_jax.checkpoint import MODEL_VARIABLES

    leaves = jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Any(*MODEL_VARIABLES)))
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def reference(out: Path, size: int) -> None:
    """Saves parameters, a fixed batch and the ``"cpu"`` program's logits to ``out``."""
    from hpe_jax.models import init_model

    model = init_model("s", seed=0, kernels="cpu")
    model.eval()
    image = np.random.default_rng(0).standard_normal((PARITY_BATCH, size, size, 3), np.float32)
    with jax.default_matmul_precision("highest"):
        logits = [np.asarray(x) for x in model(image)]
    np.savez(
        out,
        image=image,
        **{f"logits_{i}": x for i, x in enumerate(logits)},
        **{f"state{key}": value for key, value in flat_state(model).items()},
    )
    print(f"saved {len(logits)} logit arrays of {PARITY_BATCH} images at {size} px to {out}")


def parity(saved: Path) -> float:
    """The largest |logit difference| of the ``"xla"`` program on the default backend from the
    saved CPU logits, same parameters and batch."""
    from flax import nnx

    from hpe_jax.checkpoint import MODEL_VARIABLES
    from hpe_jax.models import init_model

    data = np.load(saved)
    model = init_model("s", seed=1, kernels="xla")
    state = nnx.state(model, nnx.Any(*MODEL_VARIABLES))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    values = [data[f"state{path}"] for path in paths]
    nnx.update(model, jax.tree.unflatten(jax.tree.structure(state), values))
    model.eval()
    with jax.default_matmul_precision("highest"):
        logits = model(data["image"])
    return max(
        float(np.max(np.abs(np.asarray(x) - data[f"logits_{i}"]))) for i, x in enumerate(logits)
    )


def median_step_s(step, steps: int) -> float:
    """Median seconds of ``step()`` (which blocks) over ``steps`` calls after two warm-ups."""
    step()
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def jax_train_step_s(size: int, batch: int, dtype: str, steps: int) -> float:
    """Median seconds of the JAX train step (``make_train_step``, as ``Trainer`` builds it)."""
    from bench_train import jit_train_step

    from configs.default import get_config

    config = get_config()
    config.model.dtype = dtype
    _, model = harness.reference_pair("s", seed=0, dtype=dtype)
    step, state, rest, sharding = jit_train_step(config, model)
    arrays = {
        k: jax.device_put(v, sharding) for k, v in harness.synthetic_batch(batch, size).items()
    }
    holder = {"state": state}

    def run() -> None:
        holder["state"], metrics = step(holder["state"], arrays, rest)
        jax.block_until_ready(metrics)

    return median_step_s(run, steps)


def torch_train_step_s(size: int, batch: int, autocast: bool, steps: int) -> float:
    """Median seconds of the original's PyTorch train step on the first CUDA device (CPU where
    there is none), eager float32 or under bfloat16 autocast."""
    import torch

    from hpe_jax.testing.torch_reference import make_torch_optimizer, torch_train_step

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _ = harness.reference_pair("s", seed=0)
    model.to(device)
    optimizer = make_torch_optimizer(model)
    data = harness.synthetic_batch(batch, size)
    tensors = (
        harness.to_nchw(data["image"]).to(device),
        torch.from_numpy(data["coarse"]).long().to(device),
        torch.from_numpy(data["shift"]).long().to(device),
        torch.from_numpy(data["angles"]).to(device),
    )
    cast = torch.autocast(device, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()

    def run() -> None:
        with cast:
            torch_train_step(model, optimizer, *tensors)
        if device == "cuda":
            torch.cuda.synchronize()

    return median_step_s(run, steps)


def device(saved: Path, size: int, batch: int, steps: int) -> None:
    """Parity against ``saved`` and the four train-step timings; prints and records them."""
    error = parity(saved)
    backend = f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    print(f"{backend}: 'xla' kernels vs saved CPU logits, max |diff| {error:.2e}")
    rows = [
        ["JAX float32", jax_train_step_s(size, batch, "float32", steps)],
        ["JAX bfloat16", jax_train_step_s(size, batch, "bfloat16", steps)],
        ["PyTorch eager float32", torch_train_step_s(size, batch, False, steps)],
        ["PyTorch bfloat16 autocast", torch_train_step_s(size, batch, True, steps)],
    ]
    baseline = rows[2][1]
    harness.print_table(
        ["train step", "ms", "images/s", "vs PyTorch f32"],
        [[name, s * 1e3, batch / s, baseline / s] for name, s in rows],
    )
    harness.append_result(
        "device_check",
        {
            "backend": backend,
            "size": size,
            "batch": batch,
            "parity_max_abs_diff": error,
            "parity_within_tolerance": error <= PARITY_TOLERANCE,
            "step_s": {name: s for name, s in rows},
        },
    )
    if error > PARITY_TOLERANCE:
        raise SystemExit(f"parity FAILED: {error:.2e} > {PARITY_TOLERANCE:.0e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("reference", "device"))
    parser.add_argument("--out", type=Path, help="reference: where to save")
    parser.add_argument("--reference", type=Path, help="device: the reference file")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="64 px, batch 2, 2 steps")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.batch, args.steps = 64, 2, 2
    if args.mode == "reference":
        if args.out is None:
            parser.error("reference needs --out")
        reference(args.out, args.size)
    else:
        if args.reference is None or not args.reference.is_file():
            parser.error("device needs --reference, a file written by the reference step")
        device(args.reference, args.size, args.batch, args.steps)


if __name__ == "__main__":
    main()
