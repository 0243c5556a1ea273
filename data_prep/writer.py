"""Writes the shards of one split under temporary names and makes them final all at once.

``commit`` closes every shard, removes the split's previous metadata and shards, renames the
new shards and writes the metadata json last, so an interrupted run never leaves a file that
looks finished: at worst hidden ``.NAME....tmp-PID`` files, which the next run removes.
(So two runs must not write the same split into the same folder at the same time.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from array_record.python.array_record_module import ArrayRecordWriter

from hpe_jax.data.layout import metadata_path, shard_name, shard_name_re, temp_path

# One record per chunk for fast random access; records hold already-compressed images.
WRITER_OPTIONS = "group_size:1,uncompressed"


class ShardSetWriter:
    """Writer of the ``num_shards`` shards of ``split`` in ``output_dir`` (a context manager).

    Leaving the ``with`` block without ``commit`` (an error, an interrupt) deletes the
    temporary files and leaves any earlier finished conversion of the split untouched.
    """

    def __init__(self, output_dir: str | Path, split: str, num_shards: int):
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        self.output_dir = Path(output_dir)
        self.split = split
        self.names = [shard_name(split, i, num_shards) for i in range(num_shards)]
        self.counts = [0] * num_shards
        pid = os.getpid()
        self._temps = [temp_path(self.output_dir / n, pid) for n in self.names]
        self._metadata = metadata_path(self.output_dir, split)
        self._metadata_temp = temp_path(self._metadata, pid)
        self._writers: list[ArrayRecordWriter] = []
        self._done = False
        try:
            for path in self._temps:
                writer = ArrayRecordWriter(str(path), WRITER_OPTIONS)
                self._writers.append(writer)
                if not writer.ok():
                    raise OSError(f"{path}: cannot open an ArrayRecord file for writing")
        except BaseException:
            self.abort()
            raise

    def write(self, shard: int, record: bytes) -> None:
        """Appends one serialised record to shard ``shard``."""
        self._writers[shard].write(record)
        self.counts[shard] += 1

    def commit(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Closes the shards, replaces the split's old files and writes ``metadata`` last, with
        ``num_shards`` and ``num_records`` set from what was written; returns what it wrote."""
        metadata = {**metadata, "num_shards": len(self.names), "num_records": sum(self.counts)}
        for path, writer in zip(self._temps, self._writers, strict=True):
            if not writer.ok():
                raise OSError(f"{path}: the ArrayRecord writer failed")
            writer.close()
        with self._metadata_temp.open("w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=1)
            f.write("\n")
        self._metadata.unlink(missing_ok=True)
        old = shard_name_re(self.split)
        for path in self.output_dir.iterdir():
            if old.fullmatch(path.name) and path.name not in self.names:
                path.unlink()
        for temp, name in zip(self._temps, self.names, strict=True):
            os.replace(temp, self.output_dir / name)
        os.replace(self._metadata_temp, self._metadata)
        self._done = True
        return metadata

    def abort(self) -> None:
        """Closes and deletes the temporary files (a no-op after ``commit``)."""
        if self._done:
            return
        for writer in self._writers:
            if writer.is_open():
                writer.close()
        for path in [*self._temps, self._metadata_temp]:
            path.unlink(missing_ok=True)
        self._done = True

    def __enter__(self) -> ShardSetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()
