"""The same Optuna sweep twice, with the median pruner and without, from the same sampler seed; prints what
pruning stopped and the compute it saved, and the exact-versus-Optuna threshold comparison of every trial.

    python bench/sweep_pruning.py                          # Gemma-3-270M on the demo, 8 trials each (CPU: ~1 h)
    python bench/sweep_pruning.py --trials 8 --set backbone=tiny   # the tiny random model: minutes, no signal
    python bench/sweep_pruning.py --json sweep.json        # also keep the figures

Each sweep is `python train.py -m +hparams_search=lr ...` in a scratch folder, its own sqlite study and MLflow
store. The demo is synthetic: the table measures the harness, not the recipe on real data.
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
import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = [
    "data.max_rows=600",
    "split.n_folds=3",
    "train.epochs=2",
    "evaluate_dev=false",
    "tracking.log_model=false",
    "sweep.register_champion=false",
    "threshold.method=optuna",
    "threshold.optuna_trials=100",
    "progress=false",
]


# The exact search's F1 is the best out-of-fold F1, logged once under that name (reporting.REPEATS).
LOGGED_AS = {"threshold_exact_f1": "oof_best_f1"}


def sweep(folder: Path, pruner: str, trials: int, extra: list[str]) -> dict:
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "+hparams_search=lr",
        f"sweep/pruner={pruner}",
        f"hydra.sweeper.n_trials={trials}",
        "sweep.pruner.n_startup_trials=2" if pruner == "median" else "",
        *DEFAULTS,
        *extra,
    ]
    started = time.perf_counter()
    result = subprocess.run(
        [c for c in command if c],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"sweep with pruner={pruner} failed:\n{result.stderr[-3000:]}")
    study = optuna.load_study(
        study_name=optuna.get_all_study_names(f"sqlite:///{folder}/sweeps/optuna.db")[0],
        storage=f"sqlite:///{folder}/sweeps/optuna.db",
    )
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    n_folds = int(next(a for a in DEFAULTS + extra if a.startswith("split.n_folds=")).split("=")[1])
    folds = sum(n_folds if t.state == TrialState.COMPLETE else t.last_step + 1 for t in finished)
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlruns/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["relevance"], filter_string="tags.`relevance.level` = 'parent'")
    done = runs[runs["tags.relevance.trial_state"] == "COMPLETE"]
    return {
        "pruner": pruner,
        "seconds": seconds,
        "trials": len(finished),
        "pruned": sum(t.state == TrialState.PRUNED for t in finished),
        "folds": folds,
        "folds_all": n_folds * len(finished),
        "trial_seconds": sum(t.duration.total_seconds() for t in finished),
        "best": study.best_value,
        "best_lr": study.best_params["train.lr"],
        "thresholds": [
            {
                "trial": int(row["tags.relevance.trial"]),
                **{
                    f"{m}_{k}": float(row[f"metrics.{LOGGED_AS.get(f'threshold_{m}{s}', f'threshold_{m}{s}')}"])
                    for m in ("exact", "optuna")
                    for k, s in (("t", ""), ("f1", "_f1"), ("s", "_seconds"))
                },
            }
            for _, row in done.sort_values("tags.relevance.trial").iterrows()
        ],
    }


def table(results: list[dict]) -> str:
    lines = [
        "| pruner | trials | pruned | folds trained | compute saved | trial time | best OOF F1 | best lr |",
        "|---|---|---|---|---|---|---|---|",
    ]
    baseline = next((r for r in results if r["pruner"] == "none"), None)
    for r in results:
        saved = 1 - r["folds"] / r["folds_all"]
        timing = f"{r['trial_seconds'] / 60:.1f} min"
        if baseline and r is not baseline:
            timing += f" ({1 - r['trial_seconds'] / baseline['trial_seconds']:.0%} less)"
        lines.append(
            f"| {r['pruner']} | {r['trials']} | {r['pruned']} | {r['folds']} of {r['folds_all']} | "
            f"{saved:.0%} of folds | {timing} | {r['best']:.4f} | {r['best_lr']:.2e} |"
        )
    rows = [t for r in results if r["pruner"] == "none" for t in r["thresholds"]] or results[0]["thresholds"]
    lines += [
        "",
        "| trial | exact threshold | exact F1 | exact time | Optuna threshold (100 TPE trials) | "
        "Optuna F1 | Optuna time |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in rows:
        lines.append(
            f"| {t['trial']} | {t['exact_t']:.3f} | {t['exact_f1']:.4f} | {t['exact_s'] * 1000:.1f} ms | "
            f"{t['optuna_t']:.3f} | {t['optuna_f1']:.4f} | {t['optuna_s'] * 1000:.0f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for both sweeps, e.g. backbone=tiny")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = []
    for pruner in ("none", "median"):
        with tempfile.TemporaryDirectory(prefix=f"sweep-{pruner}-") as folder:
            print(f"sweep with pruner={pruner} ...", file=sys.stderr, flush=True)
            results.append(sweep(Path(folder), pruner, args.trials, args.set))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
