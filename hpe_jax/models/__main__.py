"""``python -m hpe_jax.models [--variant s] [--input_size 224]``: a summary of the network.

Prints the parameter count per top-level part and in total, the output shapes, and the decoded
angles (degrees) of one random image.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from flax import nnx

from hpe_jax import decode_angles, init_model
from hpe_jax.models import count_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description="Summary of the hpe-jax network")
    parser.add_argument("--variant", default="s", choices=("s", "m", "l"))
    parser.add_argument("--input_size", type=int, default=224)
    args = parser.parse_args()
    model = init_model(args.variant, seed=0)
    model.eval()
    print(f"variant {args.variant}, input {args.input_size}x{args.input_size}x3 (NHWC)")
    for part in ("backbone", "side", "aspp"):
        print(f"  {part:<10} {count_parameters(getattr(model, part)):>12,d} parameters")
    print(f"  {'total':<10} {count_parameters(model):>12,d} parameters")
    image = jax.random.normal(jax.random.key(0), (1, args.input_size, args.input_size, 3))
    outputs = nnx.jit(lambda m, x: m(x))(model, image)
    print("  outputs:", ", ".join(str(tuple(o.shape)) for o in outputs))
    yaw, pitch, roll = jnp.asarray(decode_angles(outputs))[0].tolist()
    print(f"  random image -> yaw {yaw:.2f}, pitch {pitch:.2f}, roll {roll:.2f} degrees")


if __name__ == "__main__":
    main()
