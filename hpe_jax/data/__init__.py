"""Input data: the ArrayRecord record schema (``records``), crop and augmentation ops
(``transforms``) and the grain input pipelines (``pipeline``).

Import the submodules explicitly (``from hpe_jax.data.pipeline import make_train_loader``): the
converters that only need ``records`` then do not load grain.
"""
