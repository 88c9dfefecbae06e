"""The harness's own Optuna study of `experiment=offline_best` on `data=taxonomy`: `+hparams_search=full` (learning
rate, the head's rate, epochs, warm-up; median pruning after each fold; objective: out-of-fold F1 on the training
languages), then a table of every trial with its dev F1 on the seen and the unseen languages beside it.

    python bench/taxonomy_study.py                       # 6 trials at 3,000 rows, epochs 1-2 (about 35 min on 2 cores)
    python bench/taxonomy_study.py --trials 8            # two more trials: the study resumes where it stopped
    python bench/taxonomy_study.py --table-from bench/results/taxonomy_study.json

The study lives in `sweeps/taxonomy_study/` (its sqlite study and MLflow store), so running it again adds trials
instead of starting over. Only out-of-fold F1 chooses; the dev columns (languages and categories the study never
sees) show whether what it chose also carries to unseen languages. No refit: a trial is the fold ensemble.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, need_taxonomy, table, write_section  # noqa: E402

# offline_best decides unseen languages at matched-rate thresholds, so its dev F1 there is the matched-rate one
DEV = ["dev_seen_f1_at_oof_threshold", "dev_unseen_f1_at_matched_rate"]


def command(rows: int, trials: int, max_epochs: int) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "experiment=offline_best",
        "+hparams_search=full",
        "data=taxonomy",
        f"data.dir={need_taxonomy()}",
        f"data.taxonomy.train_rows={rows}",
        "data.taxonomy.dev_rows_per_language=150",
        "data.taxonomy.qi_rows=1500",
        "train.refit=false",
        f"train.epochs=range(1,{max_epochs + 1})",  # the search space of full.yaml, epochs capped for CPUs
        f"hydra.sweeper.n_trials={trials}",
        "tracking.log_model=false",
        "sweep.register_champion=false",
        "progress=false",
        "seed=42",
    ]


def gather(folder: Path) -> dict:
    """Every trial of the study in `folder`: its parameters, state, minutes, objective and dev F1."""
    storage = f"sqlite:///{folder}/sweeps/optuna.db"
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlruns/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["relevance"], filter_string="tags.`relevance.level` = 'parent'")
    by_trial = {int(row["tags.relevance.trial"]): row for _, row in runs.iterrows() if row.get("tags.relevance.trial")}
    trials = []
    for trial in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        run = by_trial.get(trial.number)
        dev = {key: run.get(f"metrics.{key}") for key in DEV} if run is not None else {}
        trials.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "params": trial.params,
                "minutes": trial.duration.total_seconds() / 60,
                "oof_best_f1": trial.value,
                **{key: float(value) for key, value in dev.items() if value == value and value is not None},
            }
        )
    return {"study": study.study_name, "trials": trials}


def render(result: dict) -> str:
    def cell(trial, key):
        return f"{trial[key]:.3f}" if trial.get(key) is not None else "-"

    complete = [t for t in result["trials"] if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["oof_best_f1"])["trial"] if complete else None
    body = [
        [
            f"{t['trial']}{' (best)' if t['trial'] == best else ''}",
            t["state"],
            f"{t['params']['train.lr']:.2e}",
            str(t["params"]["train.head_lr"]),
            str(t["params"]["train.epochs"]),
            f"{t['params']['train.warmup_ratio']:.2f}",
            cell(t, "oof_best_f1") if t["state"] == "complete" else "-",
            *(cell(t, key) for key in DEV),
            f"{t['minutes']:.1f}",
        ]
        for t in sorted(result["trials"], key=lambda t: t["trial"])
    ]
    return table(
        [
            "trial",
            "state",
            "lr",
            "head lr",
            "epochs",
            "warm-up",
            "out-of-fold F1 (objective)",
            "dev F1 seen",
            "dev F1 unseen (matched-rate thresholds)",
            "minutes",
        ],
        body,
    ) + (
        f"\n\nStudy `{result['study']}`: `experiment=offline_best` (catalogue margin, fold ensemble, no refit) on "
        f"`data=taxonomy` with {result['rows']} training rows, seed 42, epochs searched in 1-"
        f"{result.get('max_epochs', 2)} to fit 2 CPU cores; a pruned trial stopped after its first fold (median "
        f"pruner), so it has no out-of-fold or dev F1."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6, help="trials in the study, counting those already run")
    parser.add_argument("--rows", type=int, default=3000, help="taxonomy training rows")
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--folder", type=Path, default=ROOT / "sweeps" / "taxonomy_study")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "taxonomy_study.json")
    parser.add_argument("--table-from", type=Path)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    if args.table_from:
        result = json.loads(args.table_from.read_text())
    else:
        args.folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            command(args.rows, args.trials, args.max_epochs),
            cwd=args.folder,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )
        if done.returncode:
            sys.exit(f"the study stopped with exit code {done.returncode}; run the same command again to resume it.")
        result = {**gather(args.folder), "rows": args.rows, "max_epochs": args.max_epochs}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    print(text)
    if not args.no_write:
        write_section(
            "taxonomy-study",
            "Choosing offline_best's hyper-parameters with the harness's own sweeper (taxonomy)",
            text,
            command="python bench/taxonomy_study.py --trials 6",
        )


if __name__ == "__main__":
    main()
