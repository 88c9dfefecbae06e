"""The composition root: the Hydra config read once and turned into the typed objects the stages take (a `Run`),
which `pipeline.run` puts in order. Below the entry points only this module, the refusals (checks.py and the heads'
and distillation's own checks) and the planner (plan.py) read the run's config; the stages take settings objects
(`FoldSettings`, `FoldPlan`, `DataSettings`, `ReportSettings`, `ParentRunSettings`, `CardFacts`) or a config group
as a value (the backbone, head and LoRA groups a model is built from)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from relevance import interrupts, pipeline, tracking
from relevance.checks import check_config
from relevance.data.reader import read_catalogue
from relevance.data.records import Record
from relevance.data.sources import data_file, own_translations
from relevance.data.training_data import DataSettings, TrainingData, prepare_data, read_task_rows
from relevance.evaluation.reporting import Report, ReportSettings
from relevance.model.backbones import load_tokenizer
from relevance.model.heads import build_head, prompt_template
from relevance.observer import RunObserver
from relevance.runtime import Runtime, inference_device, resolve_runtime
from relevance.serving.bundle import ModelBundle
from relevance.serving.model_card import CardFacts, command, model_card
from relevance.tasks import TASKS, task_kind, task_parts
from relevance.text.formatting import fixed_prompt_tokens
from relevance.text.preprocess import Preprocessor
from relevance.text.translation import make_translations
from relevance.tracking.parent_run import ParentRunSettings
from relevance.training import distill, resume
from relevance.training.cross_validation import FoldPlan
from relevance.training.fold import FoldSettings, FoldTrainer, ModelSource
from relevance.training.tapt import TaptStage, tapt_rows
from relevance.weights import resolve_source, translator_location


def train(cfg, trial: RunObserver | None = None) -> dict:
    """What `python train.py` does below Hydra: refuse what cannot work, build the run, run its stages; the headline
    metrics and the run and model ids. `trial`: who follows the run (a sweep's trial, connected by the entry
    point). SIGTERM or Ctrl-C raises Interrupted (a KeyboardInterrupt) at once, wherever it is called from, with
    its MLflow runs marked KILLED and resumable."""
    with interrupts.interruptible():
        interrupts.check()  # a signal swallowed before this job (between a multirun's jobs) stops it here
        check_config(cfg)
        return pipeline.run(run(cfg), trial or RunObserver())


@dataclass
class Run:
    """One training run, built from the config: what `pipeline.run` orders, and all it reads."""

    runtime: Runtime
    preprocessor: Preprocessor
    data: TrainingData
    dev: list[Record] | None  # labelled dev rows, judged by the fold ensemble and the refit
    dev_inputs: list | None
    source: ModelSource
    trainer: FoldTrainer
    plan: FoldPlan
    tracking: ParentRunSettings
    reporting: ReportSettings
    counts: dict[str, float]  # rows read, dropped and added, and the teacher's fit: logged when the run opens
    extra_counts: dict[str, int]  # the rows each augmentation added
    tapt: TaptStage | None
    self_validation: object | None  # augmentation.self_validation
    refit: bool
    sweep_metric: str
    log_model: bool
    register_as: str | None
    register_alias: str | None
    card: Callable[..., str]  # (summary, seen languages, dev languages, rows, model path) -> the model card
    bundle: Callable[..., ModelBundle]  # (preprocessor, source, data, report, run id) -> what the served model needs

    def translation_counts(self) -> dict[str, int]:
        translations = self.preprocessor.translations
        return {"translations_computed": translations.computed, "translations_reused": translations.reused}

    def model_card(self, report: Report, model_path: str) -> str:
        languages = sorted(set(self.data.languages))
        dev_languages = [r.language for r in self.dev or []]
        return self.card(report.summary, languages, dev_languages, len(self.data.records), model_path)

    def model_bundle(self, report: Report, run_id: str) -> ModelBundle:
        return self.bundle(self.preprocessor, self.source, self.data, report, run_id)


def run(cfg) -> Run:
    """The run the config describes: the runtime set up, the rows read, cleaned, augmented, split and formatted, the
    base model located, the teacher's scores read, and the settings of every stage."""
    runtime = resolve_runtime(
        cfg.strategy, cfg.train.precision, cfg.backbone.dtype, cfg.strategy.devices, cfg.strategy.num_nodes
    )
    if runtime.accelerator == "gpu":  # before any model moves: "cuda" alone means this rank's GPU, not GPU 0
        torch.cuda.set_device(inference_device())
    preprocessor = make_preprocessor(cfg)
    files = data_settings(cfg, list(preprocessor.templates))
    data, clean_report, dev, extra_counts = prepare_data(files, preprocessor)
    dev_inputs = preprocessor.format(dev) if dev else None
    source = model_source(cfg, preprocessor)
    data.catalogue = catalogue(cfg, preprocessor, source.tokenizer, data.inputs + (dev_inputs or []))
    tracking_uri, artifact_root = tracking.store_of(cfg.tracking.uri, cfg.tracking.artifact_root, cfg.paths.root)
    if cfg.distill.teachers:  # every rank, before any rank's store is set up (the teacher lives in the run's)
        data.teacher = distill.teacher_logits(
            cfg.distill, data.originals, len(data.records), tracking_uri, Path(cfg.paths.cache), cfg.progress
        )
    counts = {
        "rows_train": len(data.records),
        "rows_dropped_empty_query": clean_report.dropped_empty_query,
        **extra_counts,
        **distill.teacher_metrics(data.labels, data.teacher),
    }
    augmentation = cfg.get("augmentation") or {}
    return Run(
        runtime=runtime,
        preprocessor=preprocessor,
        data=data,
        dev=dev,
        dev_inputs=dev_inputs,
        source=source,
        trainer=fold_trainer(cfg, runtime, source),
        plan=fold_plan(cfg, runtime),
        tracking=parent_run_settings(cfg, tracking_uri, artifact_root, files),
        reporting=report_settings(cfg),
        counts=counts,
        extra_counts=extra_counts,
        tapt=tapt_stage(cfg, preprocessor),
        self_validation=augmentation.get("self_validation"),
        refit=bool(cfg.train.refit),
        sweep_metric=cfg.sweep.metric,
        log_model=bool(cfg.tracking.log_model),
        register_as=cfg.register.name,
        register_alias=cfg.register.alias,
        card=functools.partial(model_card, card_facts(cfg)),
        bundle=bundle_maker(cfg),
    )


def make_preprocessor(cfg) -> Preprocessor:
    """The run's one path from raw rows to model inputs (the logged model replays it from its bundle)."""
    templates = {task: prompt_template(part, cfg.head, cfg.backbone) for task, part in task_parts(cfg.task).items()}
    translations = make_translations(
        OmegaConf.to_container(cfg.translator, resolve=True),
        cfg.paths.cache,
        cfg.clean.lowercase,
        functools.partial(translator_location, cache=cfg.paths.cache),
        own_translations(cfg.data, cfg.paths.cache),
        cfg.progress,
    )
    return Preprocessor(
        templates,
        cfg.backbone.kind == "encoder",
        cfg.clean.lowercase,
        cfg.get("augmentation"),
        translations,
        category_order=cfg.clean.category_order,
    )


def data_settings(cfg, tasks: list[str]) -> DataSettings:
    """Where the rows of `tasks` come from (data.*, paths.cache) and how they split (split.*, the seed)."""
    return DataSettings(
        train_files={task: data_file(cfg.data, cfg.paths.cache, task, "train") for task in tasks},
        dev_files={task: data_file(cfg.data, cfg.paths.cache, task, "dev") for task in tasks},
        seed=cfg.seed,
        max_rows=cfg.data.get("max_rows"),
        evaluate_dev=bool(cfg.evaluate_dev),
        cache=Path(cfg.paths.cache),
        split=cfg.split.name,
        n_folds=cfg.split.n_folds,
        category_depth=cfg.split.get("category_depth", 2),
    )


def training_data(cfg, preprocessor: Preprocessor):
    """`prepare_data` over the config's data settings: (TrainingData, cleaning report, dev rows, extra counts)."""
    return prepare_data(data_settings(cfg, list(preprocessor.templates)), preprocessor)


def card_facts(cfg) -> CardFacts:
    """What the model card says of the config."""
    train = cfg.train
    return CardFacts(
        task_code=cfg.task.code,
        task_name=cfg.task.name,
        target_name=cfg.task.target_name,
        data=str(cfg.data.name),
        n_folds=cfg.split.n_folds,
        split=cfg.split.name,
        backbone=OmegaConf.to_container(cfg.backbone, resolve=True),
        head=cfg.head.name,
        threshold_method=cfg.threshold.method,
        threshold_unseen=cfg.threshold.unseen,
        refit=bool(train.refit),
        lora_r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        epochs=train.epochs,
        lr=train.lr,
        batch_size=train.batch_size,
        max_length=train.max_length,
        augmentation=tuple(cfg.get("augmentation") or {}),
        tapt=cfg.tapt.name,
        seed=cfg.seed,
        command=command(),
    )


def report_settings(cfg) -> ReportSettings:
    return ReportSettings(
        task_code=cfg.task.code,
        tasks=tuple(task_parts(cfg.task)),
        threshold=cfg.threshold,
        seed=cfg.seed,
        n_folds=cfg.split.n_folds,
        title=cfg.backbone.name,
    )


def parent_run_settings(cfg, tracking_uri: str, artifact_root: Path, files: DataSettings) -> ParentRunSettings:
    """The parent run's store, name and resume policy, and what a new run records: its params, config and the
    data files `files` reads."""
    return ParentRunSettings(
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        experiment=cfg.tracking.experiment,
        run_name=cfg.tracking.run_name,
        min_free_gb=cfg.tracking.min_free_gb,
        progress=Path(cfg.paths.checkpoints) if cfg.train.get("checkpoint_minutes") else None,
        resume=str(cfg.get("resume") or "never"),
        fingerprint=resume.fingerprint(cfg),
        study=cfg.sweep.study,
        sweep_parent=cfg.sweep.parent_run,
        system_metrics=bool(cfg.tracking.system_metrics),
        params=tracking.flatten(cfg),
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        data_files={
            (task, which): path
            for which, paths in (("train", files.train_files), ("dev", files.dev_files))
            for task, path in paths.items()
        },
    )


def tapt_stage(cfg, preprocessor: Preprocessor) -> TaptStage | None:
    """TAPT stage 1 as chosen (tapt=none: None): the other task's rows read now, or the run to take its adapter
    from (tapt.from_run)."""
    if cfg.tapt.name == "none":
        return None
    other = TASKS[cfg.task.code].other
    if cfg.tapt.get("from_run"):
        return TaptStage(other, None, cfg.tapt.epochs, cfg.tapt.lr, str(cfg.tapt.from_run))
    path = data_file(cfg.data, cfg.paths.cache, other, "train")
    records, _ = read_task_rows(path, other, cfg.tapt.max_rows, cfg.seed, preprocessor)
    template = prompt_template(cfg.tapt.tasks[other.lower()], cfg.head, cfg.backbone)
    return TaptStage(other, tapt_rows(records, preprocessor, template), cfg.tapt.epochs, cfg.tapt.lr)


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
        wise_ft=float(train.get("wise_ft", 1.0)),
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
        progress_root=resume.progress_root(
            Path(cfg.paths.checkpoints),
            resume.fingerprint(cfg),
            cfg.train.get("checkpoint_minutes"),
            cfg.sweep.get("trial"),
            str(cfg.get("resume") or "never"),
            runtime,
        ),
    )


def bundle_maker(cfg) -> Callable[..., ModelBundle]:
    """What the served model needs besides the weights: the config's part now, the run's results at the end."""
    kind = task_kind(cfg.task.code)
    fixed = dict(
        task=cfg.task.code,
        backbone=OmegaConf.to_container(cfg.backbone, resolve=True),
        head=OmegaConf.to_container(cfg.head, resolve=True),
        eval_batch_size=cfg.train.eval_batch_size,
        folds=[f"fold_{k}" for k in range(cfg.train.folds_trained or cfg.split.n_folds)],
        unseen_threshold=cfg.threshold.unseen,
        min_language_rows=cfg.threshold.min_language_rows,
        refit="refit" if cfg.train.refit else None,
    )

    def bundle(preprocessor: Preprocessor, source: ModelSource, data, report: Report, run_id: str) -> ModelBundle:
        return ModelBundle(
            **fixed,
            preprocessor=preprocessor.to_dict(),
            max_length=source.max_length,
            thresholds=report.decision,
            language_thresholds=report.per_language,
            positive_rates={
                task: report.summary[f"{kind.metric_prefix(task)}oof_positive_rate_at_decision"]
                for task in report.decision
            },
            seen_languages=sorted(set(data.languages)),
            refit_thresholds=report.refit_decision,
            run_id=run_id,
            catalogue=data.catalogue,
        )

    return bundle


def model_source(cfg, preprocessor: Preprocessor) -> ModelSource:
    """The base weights' location, the tokenizer and the length limit with the prompt's own tokens added."""
    location = resolve_source(cfg.backbone, cfg.paths.cache)
    tokenizer = load_tokenizer(cfg.backbone, location)
    build_head(cfg.head, tokenizer)  # answer words that tokenise badly fail here, before any training
    prompt_tokens = max(
        fixed_prompt_tokens(tokenizer, template, preprocessor.encoder) for template in preprocessor.templates.values()
    )
    return ModelSource(location, tokenizer, cfg.train.max_length + prompt_tokens)


def catalogue(cfg, preprocessor: Preprocessor, tokenizer, inputs: list) -> list[str]:
    """What a margin-scoring head compares each pair with: the targets of the run's training and dev inputs, and
    the paths of head.catalogue_file, cleaned and written as the model reads targets."""
    if cfg.head.get("catalogue_file"):
        inputs = inputs + preprocessor.inputs(read_catalogue(cfg.head.catalogue_file))
    return build_head(cfg.head, tokenizer).catalogue(inputs)
