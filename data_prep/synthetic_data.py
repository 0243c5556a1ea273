"""The embedded default data: synthetic 300W-LP-format training heads and AFLW2000-format test
heads, generated and converted to TFDS datasets once (re-used when already there)."""

from __future__ import annotations

from pathlib import Path

from data_prep.convert import convert, make_builder
from data_prep.publish import split_sizes
from data_prep.synthetic import generate


def prepare_synthetic_datasets(
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
    (``aflw2000`` format, split ``test``) sets under ``out_dir`` (a TFDS data dir: datasets
    ``synthetic_heads/300w_lp`` and ``synthetic_heads/aflw2000``); returns their two version
    folders.

    ``num_train`` counts image files (flip twins included); images are ``image_size`` pixels.
    A split the dataset already holds is kept as it is.
    """
    out_dir = Path(out_dir)
    plan = (
        ("300w_lp", "train", num_train, seed),
        ("aflw2000", "test", num_test, seed + 1),
    )
    dataset_dirs = []
    for fmt, split, num, fmt_seed in plan:
        final = Path(make_builder(fmt, out_dir.resolve(), synthetic=True).data_dir)
        if split not in split_sizes(final):
            raw = out_dir / f"{fmt}_raw"
            generate(fmt, num, raw, fmt_seed, image_size=image_size)
            convert(
                fmt, raw, out_dir, split=split, workers=workers, synthetic=True, progress=progress
            )
        dataset_dirs.append(final)
    return dataset_dirs[0], dataset_dirs[1]
