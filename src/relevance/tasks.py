"""The task group: QC (query vs category path), QI (query vs item title), or both in one model (joint). The one
place that knows a joint task is made of parts, how their metrics are named, and which task trains first in TAPT."""

from __future__ import annotations

from omegaconf import DictConfig

JOINT = "JOINT"


def is_joint(code: str) -> bool:
    """One model for both tasks: rows say which task they are."""
    return code == JOINT


def task_parts(cfg) -> dict[str, DictConfig]:
    """Task code -> task config: one entry, or QC and QI for task=joint."""
    if is_joint(cfg.task.code):
        return {part.code: part for part in cfg.task.parts.values()}
    return {cfg.task.code: cfg.task}


def metric_prefix(task: str, joint: bool) -> str:
    """A joint run names each task's metrics qc_... / qi_...; a single-task run leaves them bare."""
    return f"{task.lower()}_" if joint else ""
