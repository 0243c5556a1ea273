"""Test and benchmark support shipped with hpe-jax (as ``flax.testing`` is with flax).

``hpe_jax.testing.torch_reference`` is an independent PyTorch definition of the original network,
the reference of the parity tests and the JAX-vs-PyTorch benchmarks. It needs the optional
``torch`` dependency (``pip install hpe-jax[torch]``); importing this package does not import torch.
"""
