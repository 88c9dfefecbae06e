"""Time, peak memory and F1 of `python train.py` (the embedded default unless overrides are given).

    python bench/demo_train.py                      # first run: includes the one-time GGUF conversion
    python bench/demo_train.py --fresh-cache        # force the conversion (uses a scratch cache)
    python bench/demo_train.py data.demo.train_rows=1600

Prints one table; writes nothing outside a scratch folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh-cache", action="store_true", help="convert the backbone again in a scratch cache")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to train.py")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        if args.fresh_cache:
            env["RELEVANCE_CACHE"] = f"{scratch}/cache"
        uri = f"sqlite:///{scratch}/mlflow.db"
        command = [
            sys.executable,
            str(ROOT / "train.py"),
            f"tracking.uri={uri}",
            f"tracking.artifact_root={scratch}/artifacts",
            "progress=false",
            *args.overrides,
        ]
        start = time.perf_counter()
        subprocess.run(command, cwd=scratch, env=env, check=True)
        wall = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        mlflow.set_tracking_uri(uri)
        run = mlflow.search_runs(
            experiment_names=["relevance"], filter_string="tags.`relevance.level` = 'parent'"
        ).iloc[0]
    rows = [("wall time", f"{wall / 60:.1f} min"), ("peak memory", f"{peak_gb:.1f} GB")]
    for label, key in (
        ("OOF F1 (best threshold)", "oof_best_f1"),
        ("OOF F1 at 0.5", "oof_at_0.5_f1"),
        ("OOF all-positive floor", "oof_all_positive_f1"),
        ("decision threshold", "decision_threshold"),
        ("dev F1 at OOF threshold", "dev_f1_at_oof_threshold"),
        ("dev F1 at 0.5", "dev_at_0.5_f1"),
        ("dev all-positive floor", "dev_all_positive_f1"),
    ):
        value = run.get(f"metrics.{key}")
        if value is not None and value == value:
            rows.append((label, f"{value:.4f}"))
    width = max(len(label) for label, _ in rows)
    print(f"\n{'overrides: ' + ' '.join(args.overrides) if args.overrides else 'embedded default'}")
    print(f"| {'what'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
    for label, value in rows:
        print(f"| {label.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
