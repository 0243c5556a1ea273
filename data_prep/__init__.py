"""Dataset converters into TFDS datasets (``python -m data_prep``) and their reader.

``read_records`` is imported on first use: it needs ``hpe_jax`` and TFDS, and the converter's
worker processes, which import this package, must not pay for that.
"""

from typing import Any

__all__ = ["read_records"]


def __getattr__(name: str) -> Any:
    if name == "read_records":
        from data_prep.reader import read_records

        return read_records
    raise AttributeError(f"module 'data_prep' has no attribute {name!r}")
