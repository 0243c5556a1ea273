"""Dataset converters into ArrayRecord shards (``python -m data_prep``) and their readers.

``read_records`` is imported on first use: it needs ``hpe_jax`` (which loads JAX / Flax),
and the converter's worker processes, which import this package, must not pay for that.
"""

from typing import Any

from hpe_jax.data.layout import shard_paths

__all__ = ["read_records", "shard_paths"]


def __getattr__(name: str) -> Any:
    if name == "read_records":
        from data_prep.reader import read_records

        return read_records
    raise AttributeError(f"module 'data_prep' has no attribute {name!r}")
