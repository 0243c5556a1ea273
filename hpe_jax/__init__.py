"""hpe-jax: landmark-free head pose estimation in JAX / Flax NNX."""
