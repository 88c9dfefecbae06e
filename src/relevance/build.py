"""The composition root: the Hydra config read once and turned into the typed objects the stages take. Below the
entry points, only this module, the refusals (checks.py) and the planner (plan.py) read the config."""

from __future__ import annotations

from relevance import tracking
from relevance.training import resume
from relevance.training.cross_validation import FoldPlan
from relevance.training.fold import FoldSettings, FoldTrainer, ModelSource


def fold_settings(cfg) -> FoldSettings:
    """How each model of the run trains (train.*, the seed, and the backbone, head and LoRA groups)."""
    train = cfg.train
    return FoldSettings(
        seed=cfg.seed,
        backbone=cfg.backbone,
        head=cfg.head,
        lora=cfg.lora,
        epochs=train.epochs,
        lr=train.lr,
        head_lr=train.get("head_lr"),
        weight_decay=train.weight_decay,
        warmup_ratio=train.warmup_ratio,
        scheduler=train.scheduler,
        batch_size=train.batch_size,
        eval_batch_size=train.eval_batch_size,
        num_workers=train.num_workers,
        accumulate_grad_batches=train.accumulate_grad_batches,
        gradient_clip=train.gradient_clip,
        limit_train_batches=train.limit_train_batches,
        checkpoint_minutes=train.get("checkpoint_minutes"),
        log_every_n_steps=train.get("log_every_n_steps"),
        dropout=bool(train.get("dropout")),
        gradient_checkpointing=bool(train.get("gradient_checkpointing")),
        progress_bar=bool(cfg.progress),
    )


def fold_trainer(cfg, runtime, source: ModelSource) -> FoldTrainer:
    return FoldTrainer(fold_settings(cfg), runtime, source)


def fold_plan(cfg, runtime) -> FoldPlan:
    """How the run's folds train: split.n_folds, train.folds_trained, train.require_learning, where progress is kept."""
    return FoldPlan(
        n_folds=cfg.split.n_folds,
        folds_trained=cfg.train.get("folds_trained"),
        require_learning=bool(cfg.train.get("require_learning", True)),
        run_params=tracking.flatten(cfg),
        progress_root=resume.progress_root(cfg, runtime),
    )
