"""The 'cpu' kernel set's shifted-sum depthwise conv and its hand-written gradient against the
'xla' set's grouped conv."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hpe_jax.models.kernels import cpu, xla


def _value_and_grads(conv, x: jax.Array, kernel: jax.Array, stride: int, g: jax.Array):
    y, vjp = jax.vjp(lambda a, k: conv(a, k, stride), x, kernel)
    return (y, *vjp(g))


@pytest.mark.parametrize(
    ("shape", "kernel_size", "stride"),
    [
        ((2, 7, 9, 5), 3, 1),
        ((2, 7, 9, 5), 3, 2),
        ((2, 8, 8, 4), 3, 2),
        ((3, 6, 7, 3), 5, 1),
        ((2, 9, 8, 4), 5, 2),
    ],
)
def test_shifted_sum_value_and_gradients_match_grouped_conv(shape, kernel_size, stride):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    kernel = jnp.asarray(rng.standard_normal((kernel_size, kernel_size, shape[-1]), np.float32))
    out_shape = xla.depthwise_conv(x, kernel, stride).shape
    g = jnp.asarray(rng.standard_normal(out_shape, dtype=np.float32))
    expected = _value_and_grads(xla.depthwise_conv, x, kernel, stride, g)
    actual = jax.jit(_value_and_grads, static_argnums=(0, 3))(
        cpu.depthwise_conv, x, kernel, stride, g
    )
    for name, a, e in zip(
        ("output", "input gradient", "kernel gradient"), actual, expected, strict=True
    ):
        assert a.shape == e.shape, name
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-4, err_msg=name)


def test_bfloat16_kernel_gradient_matches_the_float32_one():
    """In bfloat16 compute the kernel gradient (a sum over 2 * 32 * 32 pixels) keeps the
    kernel's dtype and equals, to bfloat16 precision, the float32 gradient of the same
    bfloat16-rounded inputs."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 1.5, (2, 32, 32, 4)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 4)).astype(np.float32)
    g = rng.uniform(0.5, 1.5, (2, 32, 32, 4)).astype(np.float32)
    bf16 = [jnp.asarray(a, jnp.bfloat16) for a in (x, kernel, g)]
    _, _, g_kernel = _value_and_grads(cpu.depthwise_conv, bf16[0], bf16[1], 1, bf16[2])
    exact = [np.asarray(a.astype(jnp.float32)) for a in bf16]
    _, _, reference = _value_and_grads(
        xla.depthwise_conv, *map(jnp.asarray, exact[:2]), 1, exact[2]
    )
    assert g_kernel.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(g_kernel, np.float32), reference, rtol=1e-2)
