"""Test and benchmark support shipped with hpe-jax (as ``flax.testing`` is with flax).

``hpe_jax.testing.torch_reference`` is an independent PyTorch definition of the original network,
the reference of the parity tests and the JAX-vs-PyTorch benchmarks. It needs the optional
``torch`` dependency (``pip install hpe-jax[torch]``); importing this package does not import torch.

``hpe_jax.testing.original_augment`` is an independent re-implementation of the original's
training-time sampling (numpy and PIL), the reference of the augmentation tests;
``hpe_jax.testing.augment_stats`` compares two samplers' outputs (op frequencies, brightness,
sharpness, flip rate).
"""
