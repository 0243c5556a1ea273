"""A test-only network variant, ``tiny``: variant 's' with one block per stage (every kind of
layer of 's', a fifth of its blocks), for tests where the network's depth does not matter and
compiling or converting the full 's' would cost most of their time."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

import hpe_jax
from hpe_jax.checkpoint import save_model
from hpe_jax.models.config import BACKBONES


@contextmanager
def tiny_checkpoint(directory: Path, input_size: int, seed: int = 0) -> Iterator[Path]:
    """A randomly initialised ``tiny`` network at ``input_size`` saved as a checkpoint step at
    ``directory``; the variant is known (``BACKBONES['tiny']``) while the block runs."""
    s = BACKBONES["s"]
    tiny = replace(s, stages=tuple(replace(stage, repeats=1) for stage in s.stages))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(BACKBONES, "tiny", tiny)
        config = hpe_jax.get_config("tiny")
        config.input_size = input_size
        model = hpe_jax.init_model("tiny", seed=seed, input_size=input_size)
        yield save_model(directory, model, config)
