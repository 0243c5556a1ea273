"""The embedded default data: synthetic 300W-LP-format training heads and AFLW2000-format test
heads, generated and converted to TFDS datasets once (re-used when already there, if generated
with the same parameters: ``synthetic_params.json`` records them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_prep.convert import convert, make_builder
from data_prep.publish import split_sizes
from data_prep.synthetic import generate
from hpe_jax.errors import UserError

PARAMS_FILE = "synthetic_params.json"


def check_params(out_dir: Path, params: dict[str, Any]) -> None:
    """Records ``params`` in ``out_dir`` (created), or raises a UserError when ``out_dir`` holds
    data generated with other parameters (or with unrecorded ones)."""
    path = out_dir / PARAMS_FILE
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != params:
            differ = ", ".join(
                f"{k} {stored.get(k)!r} there, {v!r} asked"
                for k, v in params.items()
                if stored.get(k) != v
            )
            raise UserError(
                f"{out_dir} holds synthetic data generated with other parameters ({differ}); "
                "not reused or replaced: use a new --workdir"
            )
        return
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise UserError(
            f"{out_dir} holds files but no {PARAMS_FILE}: not synthetic data of this version; "
            "not reused or replaced: use a new --workdir"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")


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
    A split the dataset already holds is kept as it is; a folder holding data of other
    parameters is refused (``check_params``).
    """
    out_dir = Path(out_dir)
    params = {"num_train": num_train, "num_test": num_test, "image_size": image_size, "seed": seed}
    check_params(out_dir, params)
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
