"""The composition root: the Hydra config read once and turned into the typed objects the stages take. The aim is
that below the entry points only this module, the refusals (checks.py) and the planner (plan.py) read the config;
fold training and cross-validation already take nothing else (the other stages follow, one at a time)."""

from __future__ import annotations

from omegaconf import OmegaConf

from relevance import multirun, tracking
from relevance.data.reader import read_catalogue
from relevance.model.backbones import load_tokenizer, resolve_source
from relevance.model.heads import build_head
from relevance.serving.bundle import ModelBundle
from relevance.tasks import is_joint, metric_prefix
from relevance.text.formatting import fixed_prompt_tokens
from relevance.text.preprocess import Preprocessor
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
        progress_root=resume.progress_root(cfg, runtime),
    )


def run_name(cfg, trial_number: int | None) -> str:
    """`tracking.run_name`, with what tells this run from its siblings (the trial, or the values a multirun
    sweeps), and a number when the experiment already has a run of that name."""
    if trial_number is not None:
        name = f"trial-{trial_number}-{cfg.tracking.run_name}"
    else:
        name = "-".join([cfg.tracking.run_name, *multirun.swept_overrides()])
    return tracking.unique_run_name(name, cfg.tracking.experiment)


def bundle(
    cfg,
    preprocessor: Preprocessor,
    source: ModelSource,
    data,
    summary: dict,
    decision: dict,
    per_language: dict,
    refit_decision: dict,
    run_id: str,
) -> ModelBundle:
    """What the served model needs besides the weights, from this run's config and results."""
    joint = is_joint(cfg.task.code)
    return ModelBundle(
        task=cfg.task.code,
        backbone=OmegaConf.to_container(cfg.backbone, resolve=True),
        head=OmegaConf.to_container(cfg.head, resolve=True),
        templates=preprocessor.templates,
        encoder=preprocessor.encoder,
        lowercase=preprocessor.lowercase,
        category_order=preprocessor.category_order,
        augmentation=OmegaConf.to_container(cfg.augmentation, resolve=True) if cfg.get("augmentation") else {},
        translator=OmegaConf.to_container(preprocessor.translations.cfg, resolve=True),
        max_length=source.max_length,
        eval_batch_size=cfg.train.eval_batch_size,
        folds=[f"fold_{k}" for k in range(cfg.train.folds_trained or cfg.split.n_folds)],
        thresholds=decision,
        language_thresholds=per_language,
        unseen_threshold=cfg.threshold.unseen,
        min_language_rows=cfg.threshold.min_language_rows,
        positive_rates={
            task: summary[f"{metric_prefix(task, joint)}oof_positive_rate_at_decision"] for task in decision
        },
        seen_languages=sorted(set(data.languages)),
        refit="refit" if cfg.train.refit else None,
        refit_thresholds=refit_decision,
        run_id=run_id,
        catalogue=data.catalogue,
    )


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
