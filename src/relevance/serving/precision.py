"""A faster CPU path for a served model, offered only where it keeps the model's F1.

`relevance quantize <model> --dev <labelled file> --output <folder>` scores the labelled rows with the model as
logged (fp32) and with int8 weights, prints speed and F1 side by side, and writes the int8 model only when its
F1 is within `--max-f1-change` (0.005) of fp32's; otherwise it refuses and writes nothing. The written model is
the logged one (same weights, digests and thresholds) whose bundle says `precision: int8` and records the check,
so `predict.py model=<folder>` and `mlflow models serve -m <folder>` score with int8 weights.

int8 here is PyTorch's dynamic quantization with one scale per output channel of every linear layer of the
backbone (the head stays fp32): weights stored as int8, activations quantized per batch. One scale per whole
tensor was measured too coarse on multilingual-e5-small (scores moved by up to 0.19, issue 29). It runs on CPUs
only (fbgemm: AVX2 and up); on a GPU the model scores in its logged precision."""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch

from relevance.errors import RelevanceError

PRECISIONS = ("fp32", "int8")
MAX_F1_CHANGE = 0.005
log = logging.getLogger(__name__)


def quantize_int8(model: torch.nn.Module, head_module: str) -> torch.nn.Module:
    """The model with every linear layer outside its head as a dynamic int8 layer, one scale per channel."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    chosen = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and head_module not in name.split(".")
    }
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it is what torch 2.13 runs
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, chosen, dtype=torch.qint8, inplace=True)


def f1_by_group(scorer, records, scores: np.ndarray) -> dict[str, float]:
    """F1 at the model's own thresholds over all rows, and apart for languages seen and unseen in training."""
    from relevance.evaluation.metrics import scores_at

    labels = np.array([r.label for r in records])
    decided = scorer.row_thresholds(records, scores)
    seen = np.array([r.language in set(scorer.bundle.seen_languages) for r in records])
    groups = {"all": np.ones(len(records), dtype=bool), "seen": seen, "unseen": ~seen}
    return {
        name: scores_at(labels[rows], scores[rows], decided[rows]).f1 for name, rows in groups.items() if rows.any()
    }


def measure(scorer, records, repeats: int = 2) -> dict:
    """pairs/s (the better of `repeats` timed runs after one untimed) and F1 of one scorer on labelled rows."""
    scores = scorer.predict_records(records)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        scorer.predict_records(records)
        rates.append(len(records) / (time.perf_counter() - started))
    return {"pairs_per_s": max(rates), "f1": f1_by_group(scorer, records, scores), "scores": scores}


def gate(fp32: dict, int8: dict, max_change: float) -> dict:
    """The check's record when every group's int8 F1 is within `max_change` of fp32's; a refusal otherwise."""
    changes = {group: int8["f1"][group] - fp32["f1"][group] for group in fp32["f1"]}
    worst = max(changes, key=lambda group: abs(changes[group]))
    if abs(changes[worst]) > max_change:
        raise RelevanceError(
            f"int8 moves the {worst} F1 from {fp32['f1'][worst]:.4f} to {int8['f1'][worst]:.4f} "
            f"({changes[worst]:+.4f}), past the allowed {max_change}; this model keeps fp32 (nothing written)."
        )
    return {
        "max_f1_change": max_change,
        "f1_fp32": fp32["f1"],
        "f1_int8": int8["f1"],
        "pairs_per_s_fp32": round(fp32["pairs_per_s"], 1),
        "pairs_per_s_int8": round(int8["pairs_per_s"], 1),
        "largest_score_change": float(np.max(np.abs(int8["scores"] - fp32["scores"]))),
    }


def table(fp32: dict, int8: dict) -> str:
    """Speed and F1 of both precisions, side by side."""
    groups = list(fp32["f1"])
    lines = [
        "| precision | pairs/s | " + " | ".join(f"F1 {g}" for g in groups) + " |",
        "|---|---|" + "---|" * len(groups),
    ]
    for name, result in (("fp32", fp32), ("int8", int8)):
        lines.append(
            f"| {name} | {result['pairs_per_s']:.1f} | " + " | ".join(f"{result['f1'][g]:.4f}" for g in groups) + " |"
        )
    return "\n".join(lines)
