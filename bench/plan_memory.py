"""The plan's memory model against measurements, three ways:

1. activations: what autograd keeps during one training forward of the real model on this CPU (tensors saved for
   the backward pass, parameters excluded) against the plan's activations in float32, for `tiny` and
   `gemma3_270m`, with LoRA dropout and eager attention as variants;
2. the whole process on this CPU: resident memory of the loaded model against the planned weights, and the peak of
   a few training steps above it (allocator, gradients in flight and the optimizer included) against the planned
   trainable + activations;
3. a GPU: the peaks an H100 measured (`bench/results/gpu_throughput_h100_*.json`, Qwen3-1.7B dimensions, bf16,
   LoRA r16 on every linear layer) against the plan of the same run.

    python bench/plan_memory.py
    python bench/plan_memory.py --json bench/results/plan_memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (backbone, overrides) measured on CPU: the default shape, a longer one, LoRA dropout, eager attention
CPU_ROWS = [
    ("tiny", ["train.batch_size=16", "train.max_length=64"]),
    ("tiny", ["train.batch_size=32", "train.max_length=512"]),
    ("tiny", ["train.batch_size=16", "train.max_length=64", "lora.dropout=0.1"]),
    ("tiny", ["train.batch_size=16", "train.max_length=256", "backbone.attention=eager"]),
    ("gemma3_270m", ["train.batch_size=16", "train.max_length=64"]),
]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import relevance  # noqa: F401 - registers the config schema

    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return compose(
            "train", overrides=["paths.root=.", "progress=false", "train.log_every_n_steps=null", *overrides]
        )


def _peak_rss() -> int:
    """Peak resident bytes since the process started or since its last reset (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure_cpu(backbone: str, overrides: list[str], steps: int) -> dict:
    """In this process (a fresh one per row): planned against kept-for-backward and resident memory."""
    import numpy as np
    import psutil
    import torch

    from relevance import build, plan
    from relevance.data.records import Record
    from relevance.data.training_data import TrainingRows
    from relevance.runtime import resolve_runtime
    from relevance.training import fold

    cfg = _compose([f"backbone={backbone}", "train.precision=32-true", "train.epochs=1", *overrides])
    planned = plan.make_plan(cfg, rows=1, cpu=True)
    runtime = resolve_runtime(cfg.strategy, cfg.train.precision, cfg.backbone.dtype, 1, 1)
    preprocessor = build.make_preprocessor(cfg)
    source = build.model_source(cfg, preprocessor)
    words = " ".join(f"farine{i} de blé" for i in range(cfg.train.max_length))  # longer than max_length tokens
    rows = cfg.train.batch_size * steps
    records = [Record(id=i, task="QC", language="fr", query=words, target=words, label=i % 2) for i in range(rows)]
    inputs = preprocessor.format(records)
    marks = {"before": psutil.Process().memory_info().rss}
    prepare = fold.finetune.prepare

    def prepare_and_mark(base, backbone_cfg, lora, head, *rest):
        model = prepare(base, backbone_cfg, lora, head, *rest)
        marks["loaded"] = psutil.Process().memory_info().rss
        ids = torch.randint(5, 500, (cfg.train.batch_size, cfg.train.max_length))
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        marks["kept"] = plan.kept_for_backward(model, lambda: head(model, batch))
        Path("/proc/self/clear_refs").write_text("5")  # Linux: restarts the peak resident size (VmHWM)
        return model

    fold.finetune.prepare = prepare_and_mark
    trained = TrainingRows(inputs, np.array([r.label for r in records]))
    build.fold_trainer(cfg, runtime, source).train(trained, [], 0, None)
    parts = planned.memory_gb()
    return {
        "backbone": backbone,
        "overrides": " ".join(o for o in overrides if not o.startswith("train.")),
        "batch x tokens": f"{cfg.train.batch_size} x {cfg.train.max_length}",
        "planned": parts,
        "kept_for_backward_gb": marks["kept"] / 1e9,
        "loaded_gb": (marks["loaded"] - marks["before"]) / 1e9,
        "training_peak_gb": (_peak_rss() - marks["loaded"]) / 1e9,
    }


def gpu_rows() -> list[dict]:
    """The plan of each run the H100 measured, beside its measured peak (LoRA training rows, one GPU)."""
    from relevance import plan

    rows = []
    for path in sorted((ROOT / "bench" / "results").glob("gpu_throughput_*.json")):
        measured = json.loads(path.read_text())
        cfg = _compose(
            [
                "backbone=qwen3_1_7b",
                f"lora.r={measured['rank']}",
                f"lora.alpha={2 * measured['rank']}",
                "lora.dropout=0",
                f"train.batch_size={measured['batch']}",
                f"train.max_length={measured['length']}",
            ]
        )
        planned = plan.make_plan(cfg, rows=1).memory_gb()
        peak = next(r["peak_gb"] for r in measured["rows"] if r["what"] == "train, auto") * 2**30 / 1e9
        rows.append(
            {
                "device": measured["device"],
                "batch x tokens": f"{measured['batch']} x {measured['length']}",
                "planned": planned,
                "measured_gb": peak,
            }
        )
    return rows


def _error(planned: float, measured: float) -> str:
    return f"{(planned - measured) / measured:+.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--backbones", nargs="+", default=sorted({b for b, _ in CPU_ROWS}))
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_cpu(args.one[0], args.one[1:], args.steps)))
        return
    cpu = []
    for backbone, overrides in CPU_ROWS:
        if backbone in args.backbones:
            command = [sys.executable, __file__, "--steps", str(args.steps), "--one", backbone, *overrides]
            out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
            cpu.append(json.loads(out.strip().splitlines()[-1]))
    print("CPU, float32: activations planned / kept for backward; weights planned / resident; training planned / peak")
    print("| backbone | variant | batch x tokens | activations GB | error | weights GB | training GB | error |")
    print("|---|---|---|---|---|---|---|---|")
    for r in cpu:
        parts = r["planned"]
        training = parts["trainable + AdamW"] + parts["activations"]
        print(
            f"| {r['backbone']} | {r['overrides'] or 'default'} | {r['batch x tokens']} "
            f"| {parts['activations']:.3f} / {r['kept_for_backward_gb']:.3f} "
            f"| {_error(parts['activations'], r['kept_for_backward_gb'])} "
            f"| {parts['weights']:.3f} / {r['loaded_gb']:.3f} | {training:.3f} / {r['training_peak_gb']:.3f} "
            f"| {_error(training, r['training_peak_gb'])} |"
        )
    gpu = gpu_rows()
    print("\nGPU, bf16, LoRA r16 on every linear layer at Qwen3-1.7B dimensions: planned / measured peak")
    print("| device | batch x tokens | planned GB (weights + trainable + activations) | measured peak GB | error |")
    print("|---|---|---|---|---|")
    for r in gpu:
        total = sum(r["planned"].values())
        parts = " + ".join(f"{v:.2f}" for v in r["planned"].values())
        print(
            f"| {r['device']} | {r['batch x tokens']} | {total:.2f} ({parts}) | {r['measured_gb']:.2f} "
            f"| {_error(total, r['measured_gb'])} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "gpu": gpu}, indent=2))


if __name__ == "__main__":
    main()
