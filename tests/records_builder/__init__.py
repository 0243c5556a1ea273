"""A TFDS builder of hand-made records for tests: given poses and boxes, tiny random PNGs, the
features of ``data_prep.builders.base`` (a package: TFDS builders cannot live in a script)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from data_prep.builders.base import HeadPoseBuilder, SourceFormat
from data_prep.common import Sample
from data_prep.publish import publish

IMAGE_SIDE = 32


class TestRecords(HeadPoseBuilder):
    """Records of given poses; config ``box`` (every record has ``box``) or ``no_box``."""

    name = "test_records"
    DESCRIPTION = "hand-made records for hpe-jax tests"
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name="box"),
        tfds.core.BuilderConfig(name="no_box"),
    ]

    def __init__(self, *, samples: Sequence[Sample] = (), split: str = "train", **kwargs: Any):
        self._samples = samples
        self._split = split
        super().__init__(**kwargs)

    def source_format(self) -> SourceFormat:
        return SourceFormat("none", "png", self.builder_config.name == "box", None, None)

    def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
        return {self._split: self._generate_examples(None)}

    def _generate_examples(self, run: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        for i, sample in enumerate(self._samples):
            yield i, self._example(sample)


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def write_split(
    out: Path,
    split: str,
    poses: Sequence[Sequence[float]],
    *,
    num_shards: int = 2,
    box: Sequence[float] | None = (4.0, 4.0, 28.0, 28.0),
) -> Path:
    """Adds ``split`` to dataset ``test_records/box`` (or ``no_box`` when ``box`` is None) in
    data dir ``out``: record i is named str(i), has pose ``poses[i]`` and a random 32x32 image.
    Returns the dataset's version folder."""
    rng = np.random.default_rng(0)
    samples = [
        Sample(
            name=str(i),
            image_bytes=_png(rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)),
            image_format="png",
            pose=np.asarray(pose, np.float32),
            box=None if box is None else np.asarray(box, np.float32),
            landmarks=None,
        )
        for i, pose in enumerate(poses)
    ]
    config = "no_box" if box is None else "box"
    stage = out / f".stage-{split}"
    builder = TestRecords(
        data_dir=stage, config=config, file_format="array_record", samples=samples, split=split
    )
    builder.download_and_prepare(
        download_dir=stage / "downloads",
        download_config=tfds.download.DownloadConfig(num_shards=num_shards),
    )
    final = out / "test_records" / config / "1.0.0"
    publish(Path(builder.data_dir), final, split)
    shutil.rmtree(stage)
    return final
