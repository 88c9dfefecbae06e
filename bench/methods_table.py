"""One method switched on at a time against the embedded default (Gemma-3-270M, demo QC data, 2 folds), each a
`python train.py` run in a scratch folder; prints a Markdown table of F1 and wall time.

    python bench/methods_table.py                       # every row (about an hour on 2 CPU cores)
    python bench/methods_table.py --only baseline tags  # some rows
    python bench/methods_table.py --json results.json   # also keep the figures (written after each row)
    python bench/methods_table.py --table-from results.json   # the table of an earlier (or unfinished) run

The demo is synthetic: the table measures the pipeline, not the methods on real data.
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

import mlflow

ROOT = Path(__file__).resolve().parents[1]
UNSEEN_QC = ("ar", "de", "it", "pl")

ROWS = {
    "baseline": [],
    "translate concat": ["augmentation=[translate]"],
    "translate synthesize": ["augmentation=[translate]", "augmentation.translate.mode=synthesize",
                             "augmentation.translate.rows_per_language=150"],
    "hard negatives": ["augmentation=[hard_negatives]", "augmentation.hard_negatives.window=[5,20]"],
    "self-validation": ["augmentation=[self_validation]"],
    "tags": ["augmentation=[tags]"],
    "TAPT from QI": ["tapt=from_other_task"],
    "joint QC+QI": ["task=joint"],
}


def run_row(overrides: list[str], scratch: Path) -> dict:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    uri = f"sqlite:///{scratch}/mlflow.db"
    command = [sys.executable, str(ROOT / "train.py"), f"tracking.uri={uri}", f"tracking.artifact_root={scratch}/a",
               "progress=false", "tracking.log_model=false", *overrides]
    start = time.perf_counter()
    subprocess.run(command, cwd=scratch, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    mlflow.set_tracking_uri(uri)
    run = mlflow.search_runs(experiment_names=["relevance"], filter_string="tags.`relevance.level` = 'parent'",
                             order_by=["start_time DESC"]).iloc[0]
    metrics = {k[len("metrics."):]: v for k, v in run.items() if k.startswith("metrics.") and v == v}
    return {"minutes": wall / 60, **metrics}


def _cell(metrics: dict, key: str) -> str:
    return f"{metrics[key]:.3f}" if key in metrics else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(ROWS), help="rows to run (default: all)")
    parser.add_argument("--json", type=Path, help="write the figures here after each row")
    parser.add_argument("--set", nargs="*", default=[], help="overrides added to every row")
    parser.add_argument("--table-from", type=Path, help="print the table of an earlier --json file; run nothing")
    args = parser.parse_args()
    results = json.loads(args.table_from.read_text()) if args.table_from else {}
    for name in [] if args.table_from else (args.only or ROWS):
        with tempfile.TemporaryDirectory() as scratch:
            print(f"running {name}: python train.py {' '.join(ROWS[name] + args.set)}", file=sys.stderr)
            results[name] = run_row(ROWS[name] + args.set, Path(scratch))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    print("| method | overrides | OOF F1 (best thr.) | OOF F1 at 0.5 | OOF floor | dev F1 at 0.5 "
          "| dev F1 ar/de/it/pl (mean, at OOF thr.) | dev floor | minutes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in results.items():
        prefix = "qc_" if "qc_oof_best_f1" in m else ""  # task=joint: its QC half
        unseen = [m[f"{prefix}dev_f1_{lang}"] for lang in UNSEEN_QC if f"{prefix}dev_f1_{lang}" in m]
        cells = [_cell(m, prefix + key) for key in ("oof_best_f1", "oof_at_0.5_f1", "oof_all_positive_f1",
                                                     "dev_at_0.5_f1")]
        cells += [f"{sum(unseen) / len(unseen):.3f}" if unseen else "-", _cell(m, prefix + "dev_all_positive_f1"),
                  f"{m['minutes']:.1f}"]
        print(f"| {name} | `{' '.join(ROWS[name]) or '(none)'}` | {' | '.join(cells)} |")

if __name__ == "__main__":
    main()
