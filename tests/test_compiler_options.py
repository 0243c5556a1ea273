"""The XLA compiler options of hpe-jax's jitted functions (hpe_jax/compiler_options.py)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hpe_jax.compiler_options import compiler_options, ynnpack_convolutions
from hpe_jax.models.kernels import cpu


def _conv_loss(x: jax.Array, kernel: jax.Array) -> jax.Array:
    y = cpu.conv_general_dilated(
        x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return (y * y).sum()


def test_cpu_convolutions_and_their_gradients_leave_ynnpack_with_the_same_values():
    if compiler_options() is None:
        pytest.skip(f"this jaxlib ({jax.__version__}) does not know the XLA:CPU option")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 16, 24)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 24, 32)).astype(np.float32)
    grads = jax.grad(_conv_loss, argnums=(0, 1))
    ours = jax.jit(grads, compiler_options=compiler_options())
    assert ynnpack_convolutions(ours.lower(x, kernel).compile().as_text()) == []
    default = jax.jit(grads)
    for got, want in zip(ours(x, kernel), default(x, kernel), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_ynnpack_convolutions_reads_the_fusions_of_a_compiled_module():
    hlo = (
        "%fused_computation.2 (p0: f32[1,4,4,1], p1: f32[3,3,1,1]) -> f32[1,4,4,1] {\n"
        "  ROOT %c = f32[1,4,4,1]{3,2,1,0} convolution(%p0, %p1), window={size=3x3}\n"
        "}\n"
        "%fused_computation.3 (p0: f32[4]) -> f32[4] {\n"
        "  ROOT %n = f32[4]{0} negate(%p0)\n"
        "}\n"
        "ENTRY %main (x: f32[1,4,4,1], k: f32[3,3,1,1]) -> f32[1,4,4,1] {\n"
        "  %ynn_fusion.2 = f32[1,4,4,1]{3,2,1,0} fusion(%x, %k), kind=kCustom, "
        'calls=%fused_computation.2, backend_config={"fusion_config":{"kind":"__ynn_fusion"}}\n'
        "  %ynn_fusion.3 = f32[4]{0} fusion(%y), kind=kCustom, calls=%fused_computation.3, "
        'backend_config={"fusion_config":{"kind":"__ynn_fusion"}}\n'
        "}\n"
    )
    assert ynnpack_convolutions(hlo) == ["fused_computation.2"]
    assert ynnpack_convolutions(hlo.replace("__ynn_fusion", "__other")) == []


def test_other_platforms_get_xla_defaults(monkeypatch):
    for platform in ("gpu", "cuda", "rocm", "tpu"):
        assert compiler_options(platform) is None
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert compiler_options() is None
    if compiler_options("cpu") is not None:  # this jaxlib knows the option
        assert "xla_cpu_experimental_ynn_fusion_type" in compiler_options("cpu")
