"""A checkpoint's network as one file to serve without this project: StableHLO or ONNX.

    python -m hpe_jax.export --checkpoint CKPT --format stablehlo|onnx --output FILE
        [--platforms cpu,cuda,tpu] [--variant s|m|l] [--input_size S] [--overwrite] [--verbose]

The exported function maps (B, S, S, 3) float32 ImageNet-normalised RGB face crops (S the
side its training run cropped to, ``hpe_jax.inference.checkpoint_input_size``, or ``--input_size``;
B any batch size) to (B, 3) float32 degrees
(yaw, pitch, roll), the network's outputs decoded by ``hpe_jax.decode_angles``; the weights are
embedded. An existing FILE is replaced only with ``--overwrite``; the file is written under a
temporary name and renamed when complete, so a failed export leaves no partial FILE.

- ``stablehlo``: ``jax.export`` serialised with flatbuffers (the ``export`` extra; load with
  ``jax.export.deserialize``), lowered for
  ``--platforms``. The kernel set is baked in: the CPU set ('cpu') when the only platform is the
  CPU, else the set for GPUs and TPUs ('xla', which the CPU also runs, more slowly).
- ``onnx``: converted by ``jax2onnx`` (the ``export`` extra) from the 'xla' kernel set (grouped
  depthwise convolutions), one self-contained file for onnxruntime; input ``images``, output
  ``angles``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpe_jax.cli import run_cli
from hpe_jax.errors import UserError

if TYPE_CHECKING:
    import jax

    from hpe_jax.models import HPENet

FORMATS = ("stablehlo", "onnx")
PLATFORMS = ("cpu", "cuda", "tpu")


def angles_function(model: HPENet) -> Callable[[jax.Array], jax.Array]:
    """(B, S, S, 3) float32 normalised images -> (B, 3) float32 degrees (yaw, pitch, roll) with
    ``model``'s weights as constants (``model`` in inference mode)."""
    from flax import nnx

    from hpe_jax.pose import decode_angles

    graphdef, state = nnx.split(model)
    return lambda images: decode_angles(nnx.merge(graphdef, state)(images))


def export_stablehlo(model: HPENet, input_size: int, platforms: Sequence[str] = PLATFORMS) -> bytes:
    """The serialised ``jax.export.Exported`` of ``angles_function(model)`` for a symbolic batch
    size and (S, S) = (input_size, input_size), lowered for ``platforms``."""
    import jax
    import jax.numpy as jnp

    (batch,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, input_size, input_size, 3), jnp.float32)
    exported = jax.export.export(jax.jit(angles_function(model)), platforms=tuple(platforms))(spec)
    try:
        return bytes(exported.serialize())
    except ImportError as err:  # jax serialises with flatbuffers, which it does not require
        raise UserError(
            f"--format stablehlo needs flatbuffers: pip install 'hpe-jax[export]' ({err})"
        ) from err


def export_onnx(model: HPENet, input_size: int) -> Any:
    """The ONNX ``ModelProto`` of ``angles_function(model)`` (input ``images`` (B, S, S, 3)
    float32 with a dynamic B, output ``angles`` (B, 3)); build ``model`` with the 'xla' kernels."""
    try:
        from jax2onnx import to_onnx
    except ImportError as err:
        raise UserError("--format onnx needs jax2onnx: pip install 'hpe-jax[export]'") from err
    return to_onnx(
        angles_function(model),
        [("B", input_size, input_size, 3)],
        model_name="hpe_jax",
        input_names=["images"],
        output_names=["angles"],
    )


def _platforms(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in PLATFORMS]
    if unknown or not names:
        raise UserError(
            f"--platforms {text!r}: expected a comma-separated list of {', '.join(PLATFORMS)}"
        )
    return names


def export(args: argparse.Namespace) -> int:
    """Runs ``python -m hpe_jax.export`` with parsed arguments (module docstring)."""
    from hpe_jax.inference import load_for_inference

    output = Path(args.output)
    if output.is_dir():
        raise UserError(f"--output {output} is a folder; expected a file name")
    if output.exists() and not args.overwrite:
        raise UserError(
            f"--output {output} exists; not replaced: name a new file, or pass --overwrite"
        )
    platforms = _platforms(args.platforms)
    kernels = "cpu" if args.format == "stablehlo" and platforms == ("cpu",) else "xla"
    model, input_size = load_for_inference(args.checkpoint, args.variant, kernels=kernels)
    input_size = args.input_size or input_size
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    try:
        if args.format == "stablehlo":
            partial.write_bytes(export_stablehlo(model, input_size, platforms))
        else:
            import onnx

            onnx.save(export_onnx(model, input_size), partial)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    print(
        f"{output}: {args.format}, input (B, {input_size}, {input_size}, 3), "
        f"{output.stat().st_size / 1e6:.1f} MB",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="orbax checkpoint or PyTorch file")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", required=True, help="file to write")
    parser.add_argument(
        "--platforms",
        default=",".join(PLATFORMS),
        help="stablehlo: platforms to lower for (comma-separated; default cpu,cuda,tpu)",
    )
    parser.add_argument("--variant", default=None, help="s, m or l (PyTorch files; default s)")
    parser.add_argument(
        "--input_size",
        type=int,
        default=None,
        help="side of the input crops (default: the checkpoint's training data.image_size, "
        "else its model input_size)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_cli(lambda: export(args), verbose=args.verbose, folder=Path(args.output).parent)


if __name__ == "__main__":
    sys.exit(main())
