"""Parameter initialisers of the original network (float32 unless ``dtype`` says otherwise)."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jax.Array]

_INIT_CHUNK = 1 << 16


@jax.jit
def _normal_chunk(key: jax.Array, index: jax.Array) -> jax.Array:
    return jax.random.normal(jax.random.fold_in(key, index), (_INIT_CHUNK,), jnp.float32)


@jax.jit
def _uniform_chunk(key: jax.Array, index: jax.Array) -> jax.Array:
    return jax.random.uniform(jax.random.fold_in(key, index), (_INIT_CHUNK,), jnp.float32, -1, 1)


def _chunked_draw(chunk_fn: Callable[..., jax.Array], key: jax.Array, shape: tuple[int, ...]):
    """Random values of ``shape`` from fixed-size chunks, so that XLA compiles one program for
    every parameter shape (one compile per shape made a network's init take tens of seconds).
    Eagerly the chunks are joined in numpy; under tracing (``jit``, ``eval_shape``) in jax.numpy,
    with the same values."""
    size = math.prod(shape)
    chunks = [chunk_fn(key, i) for i in range(-(-size // _INIT_CHUNK))]
    if isinstance(key, jax.core.Tracer):
        return jnp.concatenate(chunks)[:size].reshape(shape)
    return np.concatenate([np.asarray(c) for c in chunks])[:size].reshape(shape)


def normal_init(stddev: float) -> Initializer:
    """Initializer drawing normal(0, stddev) values."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jnp.asarray(_chunked_draw(_normal_chunk, key, shape) * np.float32(stddev), dtype)

    return init


def uniform_init(bound: float) -> Initializer:
    """Initializer drawing uniform(-bound, bound) values."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jnp.asarray(_chunked_draw(_uniform_chunk, key, shape) * np.float32(bound), dtype)

    return init


def torch_conv_init(kernel_h: int, kernel_w: int, out_channels: int) -> Initializer:
    """The original's conv init: normal(0, sqrt(2 / (kh * kw * out)))."""
    return normal_init(math.sqrt(2.0 / (kernel_h * kernel_w * out_channels)))


def torch_default_uniform_init(fan_in: int) -> Initializer:
    """PyTorch's default init for modules the original leaves alone: U(-1/sqrt(fan_in), +)."""
    return uniform_init(1.0 / math.sqrt(fan_in))
