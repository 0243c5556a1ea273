"""Input data: the TFDS datasets of ``python -m data_prep`` (``source``), crop and augmentation
ops (``transforms``), the grain input pipelines (``pipeline``) and the global batches of a run
(``loaders``).

Import the submodules explicitly (``from hpe_jax.data.loaders import make_loader``).
"""
