"""One model trained: a fresh backbone (or the TAPT stage-1 weights), LoRA or full fine-tuning, Lightning's
Trainer, the scores of the rows asked for, and whether it learned."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import mlflow
import numpy as np
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from relevance.data.training_data import TrainingRows
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


@dataclass(frozen=True)
class FoldSettings:
    """What training one model reads of the run's config, read once (build.fold_settings). The backbone, head
    and LoRA groups stay config nodes: their loaders read them by key, and the bundle saves them as given."""

    seed: int
    backbone: Any
    head: Any
    lora: Any
    epochs: int
    lr: float
    head_lr: float | str | None
    weight_decay: float
    warmup_ratio: float
    scheduler: str
    batch_size: int
    eval_batch_size: int
    num_workers: int
    accumulate_grad_batches: int
    gradient_clip: float | None
    limit_train_batches: int | float | None
    checkpoint_minutes: float | None
    log_every_n_steps: int | None
    dropout: bool
    gradient_checkpointing: bool
    wise_ft: float
    progress_bar: bool


def fold_logger(settings: FoldSettings):
    """A logger into the active fold run, or none when no fold run is active (a stage that trains outside one)."""
    run = mlflow.active_run()
    if run is None or run.data.tags.get("relevance.level") != "fold" or not settings.log_every_n_steps:
        return False
    return FoldRunLogger(tracking_uri=mlflow.get_tracking_uri(), run_id=run.info.run_id)


def make_trainer(settings: FoldSettings, runtime, progress: Path | None = None) -> L.Trainer:
    """Lightning's Trainer for one fold; with `progress`, it saves the fold's progress there every
    `checkpoint_minutes` (and at each epoch's end) for a rerun to continue from. Step curves go to the fold's
    MLflow run every `log_every_n_steps` steps."""
    logger = fold_logger(settings)
    callbacks = [LearningRateMonitor(logging_interval="step")] if logger else []
    if progress is not None:
        callbacks.append(
            ProgressCheckpoint(
                dirpath=progress,
                filename=resume.LAST,
                train_time_interval=timedelta(minutes=float(settings.checkpoint_minutes)),
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
        max_epochs=settings.epochs,
        accumulate_grad_batches=settings.accumulate_grad_batches,
        gradient_clip_val=settings.gradient_clip,
        limit_train_batches=settings.limit_train_batches,
        deterministic=runtime.accelerator == "cpu",
        logger=logger,
        log_every_n_steps=settings.log_every_n_steps or 50,
        callbacks=callbacks,
        enable_checkpointing=progress is not None,
        enable_model_summary=False,
        enable_progress_bar=settings.progress_bar,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )  # batches are length-grouped by our own sampler


def fresh_model(settings: FoldSettings, source: ModelSource, dtype):
    """The model a fold starts from, and its head: the base loaded afresh, the head started, LoRA or full
    fine-tuning prepared (from the TAPT stage-1 weights once trained)."""
    head = build_head(settings.head, source.tokenizer)
    base = head.load(settings.backbone, source.location, source.tokenizer, dtype, settings.head)
    head.start(base, settings.backbone.head_module)
    if not settings.dropout:
        finetune.switch_off_dropout(base)  # before LoRA: its own dropout is lora.dropout
    return finetune.prepare(base, settings.backbone, settings.lora, head, source.init_adapter), head


@dataclass
class FoldTrainer:
    """Trains one model at a time with the run's settings, on its runtime, from its model source (whose TAPT
    stage-1 weights the pipeline sets once trained)."""

    settings: FoldSettings
    runtime: Any
    source: ModelSource

    def but(self, **changes) -> FoldTrainer:
        """The same trainer with some settings changed (a stage's own epochs or rate); None keeps the run's."""
        kept = {key: value for key, value in changes.items() if value is not None}
        return FoldTrainer(replace(self.settings, **kept), self.runtime, self.source)

    def train(
        self,
        rows: TrainingRows,
        score_inputs: list,
        fold: int,
        adapter_dir: Path | None,
        name: str | None = None,
        heldout_labels: np.ndarray | None = None,
        progress: Path | None = None,
        catalogue: list[str] | None = None,
    ) -> tuple[list[np.ndarray], health.FoldHealth]:
        """A fresh model (or the TAPT stage-1 weights) trained on `rows`; returns the scores of each list in
        `score_inputs` and whether the fold learned (judged on the first list against `heldout_labels` when
        given), and saves what trained to `adapter_dir`. With `progress`, training keeps its progress in that
        folder and continues from what an interrupted attempt left there. `catalogue`: the categories a head that
        scores against them (bi_encoder with catalogue_margin) indexes once trained."""
        settings, runtime, source = self.settings, self.runtime, self.source
        seed = (settings.seed + fold) % 2**32  # TAPT's stage 1 is fold -1: seed=0 must not ask numpy for seed -1
        L.seed_everything(seed, workers=True, verbose=False)
        tokenizer, max_length = source.tokenizer, source.max_length
        model, head = fresh_model(settings, source, runtime.load_dtype)
        if settings.gradient_checkpointing:
            finetune.enable_gradient_checkpointing(model)
        start = finetune.interpolation_start(model, settings.backbone) if settings.wise_ft < 1 else None
        head_lr = settings.head_lr
        if head_lr == "auto":
            head_lr = head.auto_lr(model, settings.backbone.head_module, tokenizer, rows.inputs, max_length)
            if head_lr is not None:
                log.info("%s: head learning rate %.3g (train.head_lr=auto)", name or f"fold {fold}", head_lr)
        module = RelevanceModule(
            model,
            head,
            settings.lr,
            settings.weight_decay,
            settings.warmup_ratio,
            settings.scheduler,
            head_lr=head_lr if isinstance(head_lr, (int, float)) else None,
            head_module=settings.backbone.head_module,
        )
        trainer = make_trainer(settings, runtime, progress)
        saved = resume.saved_progress(progress)
        if saved:
            log.info("%s: continuing from its checkpoint at step %d", name or f"fold {fold}", saved[1])
        common = dict(
            batch_size=settings.batch_size,
            eval_batch_size=settings.eval_batch_size,
            max_length=max_length,
            seed=seed,
            num_workers=settings.num_workers,
        )
        if head.batching == "queries":
            groups = np.arange(len(rows)) if rows.groups is None else rows.groups
        else:
            groups = None
        trainer.fit(
            module,
            datamodule=PairDataModule(
                tokenizer, rows.inputs, rows.labels, None, **common, train_groups=groups, train_teacher=rows.teacher
            ),
            ckpt_path=saved[0] if saved else None,
            weights_only=False,  # our own file: it also holds the losses so far and the RNG states
        )
        if start is not None:  # before scoring and saving: what scores and serves is the interpolated model
            finetune.interpolate(model, start, settings.wise_ft)
        head.prepare_scoring(model, tokenizer, catalogue or [], max_length, settings.eval_batch_size)
        results = []
        for inputs in score_inputs:
            outputs = trainer.predict(module, datamodule=PairDataModule(tokenizer, None, None, inputs, **common))
            results.append(gather_scores(all_ranks(outputs), len(inputs)))
        if adapter_dir is not None:
            with finetune.gathered(model):  # every rank: under ZeRO-3 the gather is a collective
                if trainer.is_global_zero:  # adapter + head, or the unfrozen weights; no base
                    finetune.save(model, adapter_dir, settings.backbone)
        gain = health.heldout_gain(heldout_labels, results[0]) if heldout_labels is not None else float("nan")
        learned = health.FoldHealth(
            name or f"fold {fold}",
            module.final_loss(),
            health.constant_guess_loss(np.asarray(rows.labels)),
            health.scores_std(results[0]) if results else float("nan"),
            gain,
        )
        health.warn_if_suspect(learned)
        return results, learned
