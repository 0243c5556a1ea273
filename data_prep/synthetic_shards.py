"""The embedded default data: synthetic 300W-LP-format training heads and AFLW2000-format test
heads, generated and converted to shards once (re-used when already complete)."""

from __future__ import annotations

from pathlib import Path

from data_prep.convert import convert
from data_prep.synthetic import generate
from hpe_jax.data.layout import metadata_path


def prepare_synthetic_shards(
    out_dir: str | Path,
    *,
    num_train: int,
    num_test: int,
    image_size: int,
    seed: int,
    workers: int = 1,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Generates and converts the synthetic train (``300w_lp`` format, split ``train``) and test
    (``aflw2000`` format, split ``test``) sets under ``out_dir``; returns the two shard folders.

    ``num_train`` counts image files (flip twins included); images are ``image_size`` pixels.
    A split whose metadata already exists is kept as it is.
    """
    out_dir = Path(out_dir)
    plan = (
        ("300w_lp", "train", num_train, seed),
        ("aflw2000", "test", num_test, seed + 1),
    )
    shard_dirs = []
    for fmt, split, num, fmt_seed in plan:
        shards = out_dir / f"{fmt}_shards"
        if not metadata_path(shards, split).exists():
            raw = out_dir / f"{fmt}_raw"
            generate(fmt, num, raw, fmt_seed, image_size=image_size)
            convert(fmt, raw, shards, split=split, workers=workers, progress=progress)
        shard_dirs.append(shards)
    return shard_dirs[0], shard_dirs[1]
