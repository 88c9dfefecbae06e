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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_train  # noqa: E402

UNSEEN_QC = ("ar", "de", "it", "pl")

ROWS = {
    "baseline": [],
    "translate concat": ["augmentation=[translate]"],
    "translate synthesize": [
        "augmentation=[translate]",
        "augmentation.translate.mode=synthesize",
        "augmentation.translate.rows_per_language=150",
    ],
    "hard negatives": ["augmentation=[hard_negatives]", "augmentation.hard_negatives.window=[5,20]"],
    "self-validation": ["augmentation=[self_validation]"],
    "tags": ["augmentation=[tags]"],
    "TAPT from QI": ["tapt=from_other_task"],
    "joint QC+QI": ["task=joint"],
}


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
            results[name] = run_train(ROWS[name] + args.set, Path(scratch))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    print(
        "| method | overrides | OOF F1 (best thr.) | OOF F1 at 0.5 | OOF floor | dev F1 at 0.5 "
        "| dev F1 ar/de/it/pl (mean, at OOF thr.) | dev floor | minutes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in results.items():
        prefix = "qc_" if "qc_oof_best_f1" in m else ""  # task=joint: its QC half
        unseen = [m[f"{prefix}dev_f1_{lang}"] for lang in UNSEEN_QC if f"{prefix}dev_f1_{lang}" in m]
        cells = [
            _cell(m, prefix + key) for key in ("oof_best_f1", "oof_at_0.5_f1", "oof_all_positive_f1", "dev_at_0.5_f1")
        ]
        cells += [
            f"{sum(unseen) / len(unseen):.3f}" if unseen else "-",
            _cell(m, prefix + "dev_all_positive_f1"),
            f"{m['minutes']:.1f}",
        ]
        print(f"| {name} | `{' '.join(ROWS[name]) or '(none)'}` | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
