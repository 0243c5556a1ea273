"""The dataset readers by name, and sample loading in worker processes.

Every reader module provides ``list_items(data_dir, filename_list, split) -> list[item]``
(cheap, in the main process; raises ConversionError when the whole input is unusable) and
``load_sample(data_dir, item) -> Sample`` (reads and checks one sample; raises SampleError).
Items are small picklable values. This module imports neither JAX nor TFDS, so worker
processes start fast.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from data_prep import aflw2000, biwi, dad, w300lp
from data_prep.common import Sample, SampleError
from hpe_jax.errors import UserError

MAX_CHUNK = 64

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
        raise UserError(f"unknown dataset {dataset!r}; expected one of {sorted(READERS)}")
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


def _chunks(items: Sequence[Any], workers: int) -> list[Sequence[Any]]:
    size = max(1, min(MAX_CHUNK, len(items) // (8 * workers)))
    return [items[i : i + size] for i in range(0, len(items), size)]


def load_samples(
    dataset: str, data_dir: Path, items: Sequence[Any], workers: int
) -> Iterator[Sample | Failure]:
    """Loaded samples (or Failures) of ``items``, in order, from ``workers`` processes.

    With one worker everything runs in this process. Otherwise chunks of items go to a
    ``spawn`` process pool with a bounded number in flight, so memory stays bounded.
    """
    chunks = _chunks(items, workers)
    if workers == 1:
        for chunk in chunks:
            yield from load_chunk(dataset, data_dir, list(chunk))
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        todo = iter(chunks)
        pending: deque[Future[list[Sample | Failure]]] = deque()
        for chunk in todo:
            pending.append(pool.submit(load_chunk, dataset, data_dir, list(chunk)))
            if len(pending) >= 4 * workers:
                break
        while pending:
            done = pending.popleft().result()
            chunk = next(todo, None)
            if chunk is not None:
                pending.append(pool.submit(load_chunk, dataset, data_dir, list(chunk)))
            yield from done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
