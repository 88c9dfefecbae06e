"""The plan's memory model against measured peak memory on this CPU: for each backbone, one process loads the
model the way a fold does, trains a few steps on rows cut at `train.max_length` (every batch as long as the plan
assumes), and reports its peak resident memory above what it held before loading; the plan (float32, as a CPU
runs) says what it expected. Prints a table; `--json` writes it.

    python bench/plan_memory.py                   # tiny and gemma3_270m, batch 16 x 64 tokens
    python bench/plan_memory.py --backbones tiny --overrides train.batch_size=32
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(backbone: str, overrides: list[str], steps: int) -> dict:
    """In this process: planned and measured GB for one backbone (run it in a fresh process per backbone)."""
    import resource

    import psutil
    from hydra import compose, initialize_config_dir

    import relevance  # noqa: F401 - registers the config schema
    from relevance import plan
    from relevance.data.records import Record
    from relevance.pipeline import _model_source
    from relevance.runtime import resolve_runtime
    from relevance.training.fold import train_fold
    from relevance.training.rows import make_preprocessor

    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        cfg = compose(
            "train",
            overrides=[
                "paths.root=.",
                f"backbone={backbone}",
                "train.precision=32-true",
                "train.epochs=1",
                "progress=false",
                "train.log_every_n_steps=null",
                *overrides,
            ],
        )
    planned = plan.make_plan(cfg, rows=1, cpu=True)
    runtime = resolve_runtime(cfg.strategy, cfg.train.precision, cfg.backbone.dtype, 1, 1)
    preprocessor = make_preprocessor(cfg)
    source = _model_source(cfg, preprocessor)
    words = " ".join(f"farine{i} de blé" for i in range(cfg.train.max_length))  # longer than max_length tokens
    rows = cfg.train.batch_size * steps
    records = [Record(id=i, task="QC", language="fr", query=words, target=words, label=i % 2) for i in range(rows)]
    inputs = preprocessor.format(records)
    before = psutil.Process().memory_info().rss
    train_fold(cfg, runtime, source, inputs, [r.label for r in records], [], 0, None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "backbone": backbone,
        "batch x tokens": f"{cfg.train.batch_size} x {cfg.train.max_length}",
        "planned_gb": sum(planned.memory_gb().values()),
        "planned_parts": planned.memory_gb(),
        "measured_gb": (peak - before) / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["tiny", "gemma3_270m"])
    parser.add_argument("--overrides", nargs="*", default=[])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.overrides, args.steps)))
        return
    results = []
    for backbone in args.backbones:
        command = [
            sys.executable,
            __file__,
            "--one",
            backbone,
            "--steps",
            str(args.steps),
            "--overrides",
            *args.overrides,
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    print("| backbone | batch x tokens | planned GB (weights / trainable / activations) | measured peak GB | error |")
    print("|---|---|---|---|---|")
    for r in results:
        parts = " / ".join(f"{v:.3f}" for v in r["planned_parts"].values())
        error = (r["planned_gb"] - r["measured_gb"]) / r["measured_gb"]
        print(
            f"| {r['backbone']} | {r['batch x tokens']} | {r['planned_gb']:.3f} ({parts}) | {r['measured_gb']:.3f} "
            f"| {error:+.0%} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
