"""Converter throughput: N synthetic 300W-LP files (450x450 jpg + mat) converted with 1 and 2
worker processes.

    python benchmarks/bench_convert.py [--num 200] [--workers 1 2]

Prints records/s per run (wall time of ``convert``, pool start-up included) and appends one
JSON line to ``benchmarks/results/convert.jsonl``. The files come from
``data_prep.synthetic`` (real keys, dtypes and folder layout).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "convert.jsonl"


def main() -> None:
    # Imported here: worker processes (spawn) re-import this script and should not pay for it.
    from data_prep.convert import convert
    from data_prep.synthetic import generate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=200, help="synthetic 300W-LP samples")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "300W_LP"
        generate("300w_lp", args.num, data, seed=0)
        size_mb = sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / 1e6
        runs = []
        for workers in args.workers:
            start = time.perf_counter()
            meta = convert(
                "300w_lp", data, Path(tmp) / f"out{workers}", workers=workers, progress=False
            )
            seconds = time.perf_counter() - start
            rate = meta["num_records"] / seconds
            runs.append({"workers": workers, "seconds": round(seconds, 3), "records_per_s": rate})
            count = meta["num_records"]
            print(f"workers={workers}: {count} records, {seconds:.2f} s, {rate:.1f} rec/s")
    line = {
        "benchmark": "convert_300w_lp",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "num": args.num,
        "source_mb": round(size_mb, 1),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
