"""GPU acceptance: the real entry points on a lent GPU, sized for a 15-minute lease (issue 28, item 10).

    python bench/gpu_acceptance.py                     # on the GPU machine, from the repository root
    python bench/gpu_acceptance.py --smoke             # on a CPU: the same steps on backbone=tiny (checks the script)

1. Installs what the GPU machine lacks (Hydra, MLflow, Optuna, ...) from the wheels in `--wheels` (no index there;
   `bench/gpu_wheels.sh` downloads them here, and they travel with the working tree), then this project with
   `--no-deps`.
2. For head=classifier and head=yes_no: `python train.py` for 2 folds on the demo data, backbone=qwen3_1_7b with
   `backbone.source=random` (random weights at Qwen3-1.7B's published dimensions: nothing to download), bf16,
   strategy=auto.
3. `relevance register` and `predict.py` with the classifier's model.
4. Planned (`relevance plan --data`'s memory model) against measured peak GPU memory (each fold's
   `gpu_peak_memory_gb`), training tokens/s and MFU; one JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("hydra", "mlflow", "optuna", "omegaconf", "sklearn", "faiss", "matplotlib", "filelock", "psutil")


def install(wheels: Path) -> None:
    """This project and whatever of its dependencies the machine lacks, from local wheels only."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        print(f"installing from {wheels}: {', '.join(missing)}", flush=True)
        names = sorted(p.name for p in wheels.glob("*.whl"))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), *names],
            check=True,
        )
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT)])


def run(command: list[str], work: Path, seconds: int) -> tuple[str, float]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=seconds)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr, elapsed


def planned(overrides: list[str]):
    """The run's plan at the demo file's real row lengths (as `relevance plan --data` makes it), and those lengths."""
    from hydra import compose, initialize_config_dir

    from relevance import plan

    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=["paths.root=.", *overrides])
    lengths = plan.data_lengths(cfg)
    return plan.make_plan(cfg, rows=lengths.rows, lengths=lengths), lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, default=ROOT / "bench" / "wheels")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("OUT", "/tmp")) / "gpu_acceptance")
    parser.add_argument("--rows", type=int, default=2000, help="demo training rows (default 2000)")
    parser.add_argument("--smoke", action="store_true", help="on a CPU: backbone=tiny, a few rows")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    install(args.wheels)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    args.work.mkdir(parents=True, exist_ok=True)
    backbone = ["backbone=tiny"] if args.smoke else ["backbone=qwen3_1_7b", "backbone.source=random"]
    rows = 120 if args.smoke else args.rows
    common = [
        *backbone,
        "strategy=auto",
        "split.n_folds=2",
        f"data.demo.train_rows={rows}",
        f"data.demo.dev_rows={max(rows // 5, 40)}",
        "data.demo.test_rows=40",
        "train.epochs=1",
        "train.require_learning=false",  # random weights: the run measures the machine, not the model
        "progress=false",
        f"paths.root={args.work}",
        f"paths.cache={args.work / 'cache'}",
    ]
    report = {"gpu": gpu, "torch": torch.__version__, "rows": rows, "heads": {}}
    for head in ("classifier", "yes_no"):
        overrides = [*common, f"head={head}"]
        output, seconds = run([sys.executable, str(ROOT / "train.py"), *overrides], args.work, 420)
        run_id = re.findall(r"^run (\w{32}):", output, flags=re.M)[-1]
        the_plan, lengths = planned(overrides)
        import mlflow

        from relevance.plan import GPUS

        mlflow.set_tracking_uri(f"sqlite:///{args.work}/mlruns/mlflow.db")
        folds = mlflow.search_runs(
            experiment_names=["relevance"], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
        )
        trained_tokens = float(folds["metrics.rows_trained"].sum()) * lengths.mean
        fold_seconds = float(folds["metrics.fold_seconds"].sum())
        tokens_per_second = trained_tokens / fold_seconds  # each fold's training and scoring: a lower bound
        peak = next((flops for name, (_, flops) in GPUS.items() if name.split("-")[0] in gpu), None)
        measured = folds.get("metrics.gpu_peak_memory_gb")
        report["heads"][head] = {
            "run_id": run_id,
            "train_py_seconds": round(seconds, 1),
            "planned_memory_gb": round(sum(the_plan.memory_gb().values()), 2),
            "measured_peak_memory_gb": round(float(measured.max()), 2) if measured is not None else None,
            "process_rss_gb_per_fold": [round(float(v), 2) for v in folds["metrics.process_rss_gb"]],
            "tokens_per_second": round(tokens_per_second),
            "mfu": round(4 * the_plan.total * tokens_per_second / peak, 4) if peak else None,  # LoRA: 4 N a token
        }
        print(head, json.dumps(report["heads"][head]), flush=True)
    classifier = report["heads"]["classifier"]["run_id"]
    _, register_seconds = run(
        [
            "relevance",
            "register",
            "--run-id",
            classifier,
            "--name",
            "acceptance-qc",
            "--tracking-uri",
            f"sqlite:///{args.work}/mlruns/mlflow.db",
        ],
        args.work,
        300,
    )
    output, predict_seconds = run(
        [
            sys.executable,
            str(ROOT / "predict.py"),
            "model=models:/acceptance-qc@champion",
            "file=dev",
            *common[-2:],
            "progress=false",
            f"output_dir={args.work / 'submissions'}",
        ],
        args.work,
        300,
    )
    report |= {"register_seconds": round(register_seconds, 1), "predict_seconds": round(predict_seconds, 1)}
    report["predict_output"] = [line for line in output.splitlines() if line.strip() and "Loading" not in line][-3:]
    args.out.mkdir(parents=True, exist_ok=True)
    name = "smoke" if args.smoke else re.sub(r"\W+", "_", gpu.lower()).strip("_")
    path = args.out / f"gpu_acceptance_{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
