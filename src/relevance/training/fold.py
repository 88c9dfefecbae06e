"""One model trained: a fresh backbone (or the TAPT stage-1 weights), LoRA or full fine-tuning, Lightning's
Trainer, the scores of the rows asked for, and whether it learned."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from relevance.model import finetune
from relevance.model.datamodule import PairDataModule
from relevance.model.heads import build_head
from relevance.model.module import RelevanceModule, all_ranks, gather_scores
from relevance.training import health, resume

log = logging.getLogger(__name__)


@dataclass
class ModelSource:
    """Where every training stage gets its model from: the base weights' location, the tokenizer, the length limit
    (prompt included) and the TAPT stage-1 weights to start from, once trained."""

    location: str
    tokenizer: object
    max_length: int
    init_adapter: Path | None = None


class ProgressCheckpoint(ModelCheckpoint):
    """Lightning's checkpoint on a time interval, never between the micro-batches of one accumulated step (their
    summed gradients are not part of a checkpoint, so a resumed fold would lose them). A marker beside it says it
    was saved whole by every rank (DeepSpeed writes a folder of shards, one or more per rank), so that a kill
    mid-save leaves a checkpoint no rerun trusts rather than one half old and half new."""

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if trainer.fit_loop.epoch_loop._should_accumulate():
            return
        super().on_train_batch_end(trainer, *args, **kwargs)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        marker = Path(f"{filepath}{resume.COMPLETE}")
        if trainer.is_global_zero:
            marker.unlink(missing_ok=True)
        trainer.strategy.barrier("progress checkpoint: marker removed")
        super()._save_checkpoint(trainer, filepath)
        trainer.strategy.barrier("progress checkpoint: saved on every rank")
        if trainer.is_global_zero:
            marker.write_text(str(trainer.global_step))


class FoldRunLogger(MLFlowLogger):
    """Lightning's MLflow logger, writing a fold's step curves (loss, learning rate, gradient norm) into the fold's
    own run; that run was opened by tracking.start_run, which also ends it, so `finalize` leaves its status alone
    (Lightning's would mark it FINISHED before the fold is scored and saved, and resume would take it as done)."""

    def finalize(self, status: str = "success") -> None:
        return


def fold_logger(cfg):
    """A logger into the active fold run, or none when no fold run is active (a stage that trains outside one)."""
    run = mlflow.active_run()
    if run is None or run.data.tags.get("relevance.level") != "fold" or not cfg.train.get("log_every_n_steps"):
        return False
    return FoldRunLogger(tracking_uri=mlflow.get_tracking_uri(), run_id=run.info.run_id)


def make_trainer(cfg, runtime, epochs: int, progress: Path | None = None) -> L.Trainer:
    """Lightning's Trainer for one fold; with `progress`, it saves the fold's progress there every
    `train.checkpoint_minutes` (and at each epoch's end) for a rerun to continue from. Step curves go to the
    fold's MLflow run every `train.log_every_n_steps` steps."""
    logger = fold_logger(cfg)
    callbacks = [LearningRateMonitor(logging_interval="step")] if logger else []
    if progress is not None:
        callbacks.append(
            ProgressCheckpoint(
                dirpath=progress,
                filename=resume.LAST,
                train_time_interval=timedelta(minutes=float(cfg.train.checkpoint_minutes)),
                save_top_k=1,
                enable_version_counter=False,
            )
        )
    return L.Trainer(
        accelerator=runtime.accelerator,
        devices=runtime.devices,
        num_nodes=runtime.num_nodes,
        strategy=runtime.strategy(),
        precision=runtime.precision,
        max_epochs=epochs,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches,
        gradient_clip_val=cfg.train.gradient_clip,
        limit_train_batches=cfg.train.limit_train_batches,
        deterministic=runtime.accelerator == "cpu",
        logger=logger,
        log_every_n_steps=cfg.train.get("log_every_n_steps") or 50,
        callbacks=callbacks,
        enable_checkpointing=progress is not None,
        enable_model_summary=False,
        enable_progress_bar=cfg.progress,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )  # batches are length-grouped by our own sampler


def fresh_model(cfg, source: ModelSource, dtype):
    """The model a fold starts from, and its head: the base loaded afresh, the head started, LoRA or full
    fine-tuning prepared (from the TAPT stage-1 weights once trained)."""
    head = build_head(cfg.head, source.tokenizer)
    base = head.load(cfg.backbone, source.location, source.tokenizer, dtype, cfg.head)
    head.start(base, cfg.backbone.head_module)
    if not cfg.train.get("dropout"):
        finetune.switch_off_dropout(base)  # before LoRA: its own dropout is lora.dropout
    return finetune.prepare(base, cfg.backbone, cfg.lora, head, source.init_adapter), head


def train_fold(
    cfg,
    runtime,
    source: ModelSource,
    train_inputs,
    train_labels,
    score_inputs: list,
    fold: int,
    adapter_dir: Path | None,
    epochs: int | None = None,
    lr: float | None = None,
    name: str | None = None,
    heldout_labels: np.ndarray | None = None,
    progress: Path | None = None,
    catalogue: list[str] | None = None,
    train_groups: np.ndarray | None = None,
    train_teacher: np.ndarray | None = None,
) -> tuple[list[np.ndarray], health.FoldHealth]:
    """Fresh base + LoRA or full fine-tuning (or the TAPT stage-1 weights), trained on the given rows; returns the
    scores of each list in `score_inputs` and whether the fold learned (judged on the first list against
    `heldout_labels` when given), and saves what trained to `adapter_dir`. With `progress`, training keeps its
    progress in that folder and continues from what an interrupted attempt left there. `catalogue`: the categories
    a head that scores against them (bi_encoder with catalogue_margin) indexes once trained. `train_groups`: each
    training row's query, which a head whose loss reads a query's rows together batches by (none given: each row is
    its own query). `train_teacher`: each training row's teacher logit, which a distillation loss learns."""
    seed = (cfg.seed + fold) % 2**32  # TAPT's stage 1 is fold -1: seed=0 must not ask numpy for seed -1
    L.seed_everything(seed, workers=True, verbose=False)
    tokenizer, max_length = source.tokenizer, source.max_length
    model, head = fresh_model(cfg, source, runtime.load_dtype)
    if cfg.train.get("gradient_checkpointing"):
        finetune.enable_gradient_checkpointing(model)
    head_lr = cfg.train.get("head_lr")
    if head_lr == "auto":
        head_lr = head.auto_lr(model, cfg.backbone.head_module, tokenizer, train_inputs, max_length)
        if head_lr is not None:
            log.info("%s: head learning rate %.3g (train.head_lr=auto)", name or f"fold {fold}", head_lr)
    module = RelevanceModule(
        model,
        head,
        lr or cfg.train.lr,
        cfg.train.weight_decay,
        cfg.train.warmup_ratio,
        cfg.train.scheduler,
        head_lr=head_lr if isinstance(head_lr, (int, float)) else None,
        head_module=cfg.backbone.head_module,
    )
    trainer = make_trainer(cfg, runtime, epochs or cfg.train.epochs, progress)
    saved = resume.saved_progress(progress)
    if saved:
        log.info("%s: continuing from its checkpoint at step %d", name or f"fold {fold}", saved[1])
    common = dict(
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        max_length=max_length,
        seed=seed,
        num_workers=cfg.train.num_workers,
    )
    if head.batching == "queries":
        groups = np.arange(len(train_inputs)) if train_groups is None else train_groups
    else:
        groups = None
    trainer.fit(
        module,
        datamodule=PairDataModule(
            tokenizer, train_inputs, train_labels, None, **common, train_groups=groups, train_teacher=train_teacher
        ),
        ckpt_path=saved[0] if saved else None,
        weights_only=False,  # our own file: it also holds the losses so far and the RNG states
    )
    head.prepare_scoring(model, tokenizer, catalogue or [], max_length, cfg.train.eval_batch_size)
    results = []
    for inputs in score_inputs:
        outputs = trainer.predict(module, datamodule=PairDataModule(tokenizer, None, None, inputs, **common))
        results.append(gather_scores(all_ranks(outputs), len(inputs)))
    if adapter_dir is not None:
        with finetune.gathered(model):  # every rank: under ZeRO-3 the gather is a collective
            if trainer.is_global_zero:
                finetune.save(model, adapter_dir, cfg.backbone)  # adapter + head, or the unfrozen weights; no base
    gain = health.heldout_gain(heldout_labels, results[0]) if heldout_labels is not None else float("nan")
    learned = health.FoldHealth(
        name or f"fold {fold}",
        module.final_loss(),
        health.constant_guess_loss(np.asarray(train_labels)),
        health.scores_std(results[0]) if results else float("nan"),
        gain,
    )
    health.warn_if_suspect(learned)
    return results, learned
