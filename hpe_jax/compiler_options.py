"""XLA compiler options for every jitted function of hpe-jax that runs the network.

On the CPU backend, XLA:CPU (jaxlib 0.10) hands each convolution to YNNPACK by default; these
options leave convolutions to XLA's Eigen path and keep YNNPACK for matmuls and reductions
(measured effect: BENCHMARKS.md, "What the CPU-specific code paths are worth").
"""

from __future__ import annotations

import functools
import re
import warnings

import jax
import jax.numpy as jnp

# XLA:CPU's default for this option is these two plus LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION.
_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
    )
}


@functools.cache
def _cpu_options_accepted() -> bool:
    """Whether this jaxlib's XLA:CPU knows the option (compiles a tiny convolution with it)."""
    x = jnp.zeros((1, 4, 4, 1), jnp.float32)
    kernel = jnp.zeros((3, 3, 1, 1), jnp.float32)

    def conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    try:
        jax.jit(conv, compiler_options=_CPU_OPTIONS).lower(x, kernel).compile()
    except jax.errors.JaxRuntimeError as error:
        warnings.warn(
            f"this jaxlib ({jax.__version__}) rejects the XLA:CPU option {_CPU_OPTIONS}: "
            f"{error}; compiling with XLA's defaults (convolutions may run several times slower)",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def compiler_options(platform: str | None = None) -> dict[str, str] | None:
    """``compiler_options`` for ``jax.jit`` of a function that runs the network, compiled for
    ``platform`` (the platform of its devices, ``device.platform``; ``None``:
    ``jax.default_backend()``): for ``"cpu"``, convolutions on Eigen rather than YNNPACK (see the
    module docstring); ``None`` (XLA's defaults) for other platforms, or where this jaxlib does
    not know the option (with a ``RuntimeWarning``)."""
    platform = jax.default_backend() if platform is None else platform
    if platform != "cpu" or not _cpu_options_accepted():
        return None
    return dict(_CPU_OPTIONS)


def fused_computations(hlo_text: str) -> dict[str, str]:
    """The body (instruction lines) of every named computation in the text of a compiled HLO
    module (``jax.jit(f).lower(...).compile().as_text()``), by computation name."""
    return dict(re.findall(r"^%([\w.\-]+) [^\n]*\{\n((?:.*\n)*?)\}", hlo_text, re.MULTILINE))


def ynnpack_convolutions(hlo_text: str) -> list[str]:
    """The names of the fused computations of a compiled HLO module's text that XLA:CPU hands to
    YNNPACK (``__ynn_fusion``) and that hold a convolution: empty under ``compiler_options()``."""
    bodies = fused_computations(hlo_text)
    ynn_called = re.findall(r"fusion\(.*calls=%([\w.\-]+).*\"kind\":\"__ynn_fusion\"", hlo_text)
    return [name for name in ynn_called if " convolution(" in bodies.get(name, "")]
