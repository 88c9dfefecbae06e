"""How long `python train.py` takes to start training on a 1,000,000-row file, and its peak memory by then.

    python bench/first_step.py                                   # this checkout
    python bench/first_step.py --code /tmp/before/src --label before   # another checkout's code (git worktree)

The file is written once (two languages, both labels, 5,000 queries against 700 paths); train.py runs on it with
the tiny backbone, with and without `data.max_rows=6000`, and is stopped after its first training step. The time is
from the command's start to that step; the memory is the process's peak resident set by then.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, table, write_section  # noqa: E402


def write_rows(folder: Path, rows: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "train_QC.txt").open("w", encoding="utf-8") as handle:
        for i in range(rows):
            language = ("en", "fr")[i % 2]
            row = {"id": i, "task": "QC", "language": language, "origin_query": f"query {i % 5000}", "label": i % 3 % 2}
            handle.write(json.dumps(row | {"category_path": f"home,kitchen,item {i % 700}"}) + "\n")
    with (folder / "dev_QC.txt").open("w", encoding="utf-8") as handle:
        for i in range(200):
            row = {"id": i, "task": "QC", "language": "en", "origin_query": f"query {i}", "label": i % 2}
            handle.write(json.dumps(row | {"category_path": f"item {i % 7}"}) + "\n")


def to_first_step(data: Path, code: Path | None, extra: list[str], limit: float) -> tuple[float | None, float]:
    """Seconds until the first training step is done (None: not within `limit`) and the peak resident MB. The
    first step is seen as the first progress checkpoint, which `train.checkpoint_minutes=0.0001` saves after it."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    with tempfile.TemporaryDirectory() as root:
        command = [
            sys.executable,
            str((code.parent if code else ROOT) / "train.py"),
            f"paths.root={root}",
            "data=competition",
            f"data.dir={data}",
            "backbone=tiny",
            "train.require_learning=false",
            "train.checkpoint_minutes=0.0001",
            "progress=false",
            *extra,
        ]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        said: list[str] = []
        threading.Thread(target=lambda: said.extend(process.stdout), daemon=True).start()
        seconds = None
        while process.poll() is None and time.perf_counter() - started < limit:
            if list(Path(root).glob("checkpoints/*/*/last.ckpt*")):
                seconds = time.perf_counter() - started
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        _, _, usage = os.wait4(process.pid, 0)
    if seconds is None and time.perf_counter() - started < limit:
        sys.exit("train.py ended before its first step:\n" + "".join(said[-5:]))
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--code", type=Path, default=None, help="another checkout's src/ (default: this one)")
    parser.add_argument("--label", default="now")
    parser.add_argument("--limit", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "first_step.jsonl")
    args = parser.parse_args()
    data = Path(tempfile.gettempdir()) / f"relevance-first-step-{args.rows}"
    if not (data / "train_QC.txt").is_file():
        write_rows(data, args.rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for name, extra in (("data.max_rows=6000", ["data.max_rows=6000"]), ("every row", [])):
        seconds, peak = to_first_step(data, args.code, extra, args.limit)
        row = {"code": args.label, "rows": args.rows, "setting": name, "seconds": seconds, "peak_mb": peak}
        print(row, flush=True)
        with args.output.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in args.output.read_text().splitlines() if line.strip()]
    lines = [
        [
            r["code"],
            f"{r['rows']:,}",
            r["setting"],
            f"{r['seconds']:.0f}" if r["seconds"] is not None else f"over {args.limit:.0f}",
            f"{r['peak_mb']:.0f}",
        ]
        for r in rows
    ]
    body = table(["code", "rows", "setting", "seconds to the first step", "peak RSS MB"], lines)
    write_section(
        "first-step",
        "Starting to train on a 1,000,000-row file",
        body,
        command="python bench/first_step.py; python bench/first_step.py --code <checkout before>/src --label before",
    )


if __name__ == "__main__":
    main()
