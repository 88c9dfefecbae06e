"""What reading a data file costs: resident memory and rows/s of `read_records` on big files.

    python bench/reading_memory.py                    # 1,000,000 short rows, and a file with one 10 MB row
    python bench/reading_memory.py --rows 200000

Each file is read in its own process (so its peak memory is its own), against a process that only imports the
reader. The 10 MB query is cut at MAX_FIELD_CHARS as it is read (one warning line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, table, write_section  # noqa: E402

READ = "import sys; from relevance.data.reader import read_records; {body}"


def short_rows(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            row = {"id": i, "task": "QC", "language": "en", "origin_query": f"query {i % 5000}"}
            handle.write(json.dumps(row | {"category_path": f"home,kitchen,item {i % 700}", "label": i % 2}) + "\n")
    return path


def one_huge_row(path: Path) -> Path:
    rows = [
        {"id": 1, "task": "QC", "language": "en", "origin_query": "x" * 10_000_000, "category_path": "a", "label": 0},
        {"id": 2, "task": "QC", "language": "en", "origin_query": "hat", "category_path": "a,b", "label": 1},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def measure(body: str) -> tuple[float, float]:
    """Seconds and peak resident MB of a fresh interpreter running `body` after importing the reader."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen([sys.executable, "-c", READ.format(body=body)], env=env, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"reading failed: {body}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        many = short_rows(Path(scratch) / "train_QC.txt", args.rows)
        huge = one_huge_row(Path(scratch) / "huge_QC.txt")
        base_seconds, base_mb = measure("pass")
        lines = []
        every = "records = read_records({path!r}, 'QC', require_label=True)"
        sampled_after = (  # what data.max_rows did before issue 30: read and keep every row, then sample
            "import numpy as np; records = read_records({path!r}, 'QC', require_label=True); "
            "keep = np.sort(np.random.default_rng(0).choice(len(records), 6000, replace=False)); "
            "records = [records[i] for i in keep]"
        )
        while_reading = "records = read_records({path!r}, 'QC', require_label=True, max_rows=6000)"
        cases = (
            (f"{args.rows:,} short rows", many, args.rows, every),
            (f"{args.rows:,} rows, data.max_rows=6000: sampled after reading (before)", many, args.rows, sampled_after),
            (f"{args.rows:,} rows, data.max_rows=6000: sampled while reading (now)", many, args.rows, while_reading),
            ("one 10 MB row (+1)", huge, 2, every),
        )
        for label, path, rows, code in cases:
            seconds, peak = measure(code.format(path=str(path)))
            seconds -= base_seconds
            lines.append(
                [
                    label,
                    f"{path.stat().st_size / 1e6:.1f}",
                    f"{seconds:.1f}",
                    f"{rows / seconds:,.0f}",
                    f"{peak:.0f}",
                    f"{peak - base_mb:.0f}",
                ]
            )
            print(lines[-1], flush=True)
    body = table(["file", "MB", "seconds", "rows/s", "peak RSS MB", "over the import alone"], lines)
    body += f"\n\nA process that only imports the reader peaks at {base_mb:.0f} MB."
    write_section("reading-memory", "Reading big files: memory and rows/s", body)


if __name__ == "__main__":
    main()
