"""The TFDS builder shared by every head-pose dataset: features, dataset_info and examples.

A ``HeadPoseBuilder`` writes one split per ``download_and_prepare`` from a ``ConversionRun``
(the items listed by a ``data_prep`` reader, loaded in worker processes by
``data_prep.datasets.load_samples``). Features of every example:

| key       | feature                        | meaning                                          |
|-----------|--------------------------------|--------------------------------------------------|
| image     | Image (H, W, 3) uint8          | the source's JPEG / PNG bytes, stored unchanged  |
| pose      | Tensor (3,) float32            | (yaw, pitch, roll) degrees                       |
| rotation  | Tensor (3, 3) float32          | ``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` of ``pose``   |
| box       | Tensor (4,) float32            | tight face box (x_min, y_min, x_max, y_max) px   |
| landmarks | Tensor (R, K) float32          | row 0 = x, row 1 = y (row 2 = z) pixels          |
| name      | Text                           | the source's relative name, no extension         |

``box`` and ``landmarks`` exist only for formats that have them (``SourceFormat``). Records
keep the source order (``disable_shuffling``). The dataset's ``metadata.json`` holds, per
split, where it came from and every sample skipped (unreadable) or filtered (angle limit) with
its reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from data_prep.common import ConversionError, Sample
from data_prep.datasets import Failure, load_samples
from hpe_jax.pose import ANGLE_MIN, ANGLE_NAMES, rotation_from_euler

# The bins label [-100, 100); the training flip negates yaw and roll, so |angle| < 100 is kept.
LABEL_LIMIT = -ANGLE_MIN
ROTATION_CONVENTION = "rotation_from_euler(pose) = Rz(roll) @ Ry(yaw) @ Rx(pitch), row-major"
RELEASE_NOTES = {
    "1.0.0": "hpe-jax head-pose features: source image bytes, pose (yaw, pitch, roll) degrees, "
    "rotation, tight box and landmarks where the source has them, source name.",
}


@dataclasses.dataclass(frozen=True)
class SourceFormat:
    """What one source format provides.

    Attributes:
      reader: key of ``data_prep.datasets.READERS``.
      image_format: the encoding its images usually have (``jpeg`` / ``png``), None if mixed.
      has_box: whether samples carry a tight face box.
      landmark_rows: rows of its landmarks (2: x, y; 3: x, y, z), None without landmarks.
      max_abs_angle: the standard angle filter of the format in degrees, None for none.
    """

    reader: str
    image_format: str | None
    has_box: bool
    landmark_rows: int | None
    max_abs_angle: float | None


FORMATS = {
    "300w_lp": SourceFormat("300w_lp", "jpeg", True, 2, None),
    "aflw2000": SourceFormat("aflw2000", "jpeg", True, 3, 99.0),
    "biwi": SourceFormat("biwi", "png", False, None, None),
    "dad": SourceFormat("dad", None, True, None, 99.0),
}


@dataclasses.dataclass(frozen=True)
class ConversionRun:
    """One split to write: its items and how to load and check them.

    Attributes:
      data_dir: the dataset's root folder.
      items: what the format's reader listed (``list_items``).
      split: the split name.
      workers: processes loading samples.
      on_error: ``fail`` (raise ConversionError at the first bad sample) or ``skip``.
      max_abs_angle: drop samples with any |angle| above this (degrees); None keeps all.
      filename_list: the list file the items came from, None for a scan (recorded only).
      progress: show a progress bar on stderr.
      labelled_only: drop (filter and count) samples with an angle the bins cannot label
        (``|angle| >= LABEL_LIMIT``), which training would refuse.
      num_shards: record files to write (``--num_shards``), None for TFDS's choice; more than
        the records left to write is a ConversionError.
    """

    data_dir: Path
    items: Sequence[Any]
    split: str
    workers: int
    on_error: str
    max_abs_angle: float | None
    filename_list: Path | None
    progress: bool
    labelled_only: bool = True
    num_shards: int | None = None


def _stored_value_problem(sample: Sample) -> str | None:
    """Why ``sample``'s values cannot be stored as float32 (not finite there), or None."""
    fields = {"pose": sample.pose, "box": sample.box, "landmarks": sample.landmarks}
    for key, value in fields.items():
        if value is not None and not np.all(np.isfinite(np.asarray(value, np.float32))):
            return f"{key} is not finite in float32 ({np.asarray(value).ravel()[:6].tolist()})"
    return None


def _angle_ranges(poses: list[np.ndarray]) -> dict[str, list[float]] | None:
    if not poses:
        return None
    arr = np.stack(poses)
    return {
        name: [float(arr[:, i].min()), float(arr[:, i].max())] for i, name in enumerate(ANGLE_NAMES)
    }


class HeadPoseBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A head-pose dataset written from its original files (module docstring).

    Subclasses set ``name``, ``DESCRIPTION``, ``HOMEPAGE``, ``CITATION`` and ``FORMAT`` (or
    override ``source_format``). Build with ``run`` to write; TFDS itself reads the result
    (``tfds.builder_from_directory``) without this class.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = RELEASE_NOTES
    DESCRIPTION: ClassVar[str]
    HOMEPAGE: ClassVar[str | None] = None
    CITATION: ClassVar[str | None] = None
    FORMAT: ClassVar[SourceFormat]

    def __init__(self, *, run: ConversionRun | None = None, **kwargs: Any):
        self._run = run
        super().__init__(**kwargs)

    def source_format(self) -> SourceFormat:
        """The format of this dataset's original files."""
        return self.FORMAT

    def _info(self) -> tfds.core.DatasetInfo:
        fmt = self.source_format()
        features: dict[str, tfds.features.FeatureConnector] = {
            "image": tfds.features.Image(
                shape=(None, None, 3),
                encoding_format=fmt.image_format,
                doc="RGB; the source file's JPEG / PNG bytes unchanged (BIWI: lossless PNG)",
            ),
            "pose": tfds.features.Tensor(
                shape=(3,), dtype=np.float32, doc="(yaw, pitch, roll) in degrees"
            ),
            "rotation": tfds.features.Tensor(
                shape=(3, 3), dtype=np.float32, doc=ROTATION_CONVENTION
            ),
            "name": tfds.features.Text(doc="the source's relative name, without extension"),
        }
        if fmt.has_box:
            features["box"] = tfds.features.Tensor(
                shape=(4,), dtype=np.float32, doc="tight face box (x_min, y_min, x_max, y_max), px"
            )
        if fmt.landmark_rows is not None:
            features["landmarks"] = tfds.features.Tensor(
                shape=(fmt.landmark_rows, None),
                dtype=np.float32,
                doc="landmarks, row 0 = x, row 1 = y (row 2 = z), pixels",
            )
        return self.dataset_info_from_configs(
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(features),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        if self._run is None:
            raise ConversionError(
                f"{self.name}: the original files are converted by python -m data_prep, which "
                "gives this builder what to read"
            )
        return {self._run.split: self._generate_examples(self._run)}

    # TFDS prints "Downloading and preparing ..." and "... downloaded and prepared to <the
    # staging folder>"; the converter reports the published dataset instead.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass

    def _example(self, sample: Sample) -> dict[str, Any]:
        fmt = self.source_format()
        example: dict[str, Any] = {
            "image": sample.image_bytes,
            "pose": sample.pose,
            "rotation": rotation_from_euler(sample.pose.astype(np.float64)).astype(np.float32),
            "name": sample.name,
        }
        if fmt.has_box:
            example["box"] = sample.box
        if fmt.landmark_rows is not None:
            example["landmarks"] = sample.landmarks
        return example

    def _generate_examples(self, run: ConversionRun) -> Iterator[tuple[int, dict[str, Any]]]:
        """Loads, checks and yields the run's samples in order; records the split's metadata
        (``metadata.json``: skipped and filtered samples with reasons) when done."""
        limit = run.max_abs_angle
        skipped: list[dict[str, str]] = []
        filtered: list[dict[str, str]] = []
        poses: list[np.ndarray] = []
        outcomes = load_samples(self.source_format().reader, run.data_dir, run.items, run.workers)
        desc = f"{self.name}/{run.split}"
        with tqdm(total=len(run.items), unit="rec", desc=desc, disable=not run.progress) as bar:
            for position, outcome in enumerate(outcomes):
                bar.update()
                if isinstance(outcome, Sample) and (problem := _stored_value_problem(outcome)):
                    outcome = Failure(outcome.name, str(run.data_dir / outcome.name), problem)
                if isinstance(outcome, Failure):
                    if run.on_error == "fail":
                        raise ConversionError(f"{outcome.path}: {outcome.problem}")
                    skipped.append(
                        {"name": outcome.name, "path": outcome.path, "reason": outcome.problem}
                    )
                    continue
                pose = outcome.pose
                angles = ", ".join(f"{n} {a:.2f}" for n, a in zip(ANGLE_NAMES, pose, strict=True))
                if limit is not None and np.any(np.abs(pose) > limit):
                    filtered.append(
                        {"name": outcome.name, "reason": f"|angle| > {limit:g} ({angles})"}
                    )
                    continue
                if run.labelled_only and not np.all(np.abs(pose) < LABEL_LIMIT):
                    filtered.append(
                        {
                            "name": outcome.name,
                            "reason": f"outside the angle bins' range, |angle| < {LABEL_LIMIT:g} "
                            f"({angles})",
                        }
                    )
                    continue
                poses.append(pose)
                yield position, self._example(outcome)
        if not poses:
            raise ConversionError(
                f"{run.data_dir}: no record left to write ({len(skipped)} skipped, "
                f"{len(filtered)} filtered)"
            )
        if run.num_shards is not None and len(poses) < run.num_shards:
            raise ConversionError(
                f"--num_shards {run.num_shards}: more record files than the {len(poses)} "
                f"records left to write ({len(skipped)} skipped, {len(filtered)} filtered); "
                f"choose at most {len(poses)}"
            )
        self.info.metadata[run.split] = {
            "source_dir": str(run.data_dir),
            "filename_list": None if run.filename_list is None else str(run.filename_list),
            "rotation": ROTATION_CONVENTION,
            "max_abs_angle": limit,
            "labelled_only": run.labelled_only,
            "on_error": run.on_error,
            "num_filtered": len(filtered),
            "filtered": filtered,
            "num_skipped": len(skipped),
            "skipped": skipped,
            "angle_ranges": _angle_ranges(poses),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
