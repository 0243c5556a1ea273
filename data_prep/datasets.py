"""The dataset readers by name, and the unit of work of a converter worker process.

Every reader module provides ``list_items(data_dir, filename_list, split) -> list[item]``
(cheap, in the main process; raises ConversionError when the whole input is unusable) and
``load_sample(data_dir, item) -> Sample`` (reads and checks one sample; raises SampleError).
Items are small picklable values. This module does not import JAX, so workers start fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from data_prep import aflw2000, biwi, dad, w300lp
from data_prep.common import Sample, SampleError

READERS: dict[str, ModuleType] = {
    "300w_lp": w300lp,
    "aflw2000": aflw2000,
    "biwi": biwi,
    "dad": dad,
}


@dataclass(frozen=True)
class Failure:
    """A sample that could not be loaded: its name, the file / entry at fault and the problem."""

    name: str
    path: str
    problem: str


def reader(dataset: str) -> ModuleType:
    """The reader module of ``dataset`` (one of ``READERS``)."""
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(READERS)}")
    return READERS[dataset]


def load_chunk(dataset: str, data_dir: Path, items: list[Any]) -> list[Sample | Failure]:
    """Loads ``items`` in order; a bad sample becomes a Failure, any other error propagates."""
    load = reader(dataset).load_sample
    out: list[Sample | Failure] = []
    for item in items:
        try:
            out.append(load(data_dir, item))
        except SampleError as e:
            out.append(Failure(e.name, e.path, e.problem))
    return out
