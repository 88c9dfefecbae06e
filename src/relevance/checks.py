"""Every setting checked before any data is read or model loaded: one sentence naming the key and the fix."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from relevance import tracking
from relevance.augment import chosen
from relevance.data.sources import data_file, generated
from relevance.data.splits import check_split_for_task
from relevance.errors import ConfigError, require_number
from relevance.evaluation import thresholds
from relevance.model import finetune
from relevance.model.heads import head_class, prompt_template
from relevance.model.hub import hub_model_available
from relevance.runtime import zero_stage
from relevance.tasks import TASKS, task_kind, task_parts
from relevance.text.formatting import check_template
from relevance.text.preprocess import CATEGORY_ORDERS
from relevance.text.translation import MODEL_TRANSLATORS, TranslatorSettings
from relevance.training import distill

CONF = Path(__file__).resolve().parents[2] / "conf"  # the config groups train.py and predict.py compose
log = logging.getLogger(__name__)


def _check_number(cfg: DictConfig, key: str, integer: bool, minimum: float, strict: bool = False) -> None:
    require_number(OmegaConf.select(cfg, key), key, integer, minimum, strict)


def check_config(cfg: DictConfig) -> None:
    """Refuse combinations that cannot work, before any data is read or model loaded."""
    _check_number(cfg, "train.lr", integer=False, minimum=0, strict=True)
    if cfg.train.get("head_lr") not in (None, "auto"):
        _check_number(cfg, "train.head_lr", integer=False, minimum=0, strict=True)
    finetune.method(cfg.backbone)
    for key in ("train.weight_decay", "train.warmup_ratio", "lora.dropout", "lora.alpha"):
        _check_number(cfg, key, integer=False, minimum=0)
    for key, minimum in (
        ("train.batch_size", 1),
        ("train.eval_batch_size", 1),
        ("train.epochs", 1),
        ("train.accumulate_grad_batches", 1),
        ("train.max_length", 8),
        ("lora.r", 1),
        ("split.n_folds", 2),
    ):
        _check_number(cfg, key, integer=True, minimum=minimum)
    _check_number(cfg, "seed", integer=True, minimum=0)
    if cfg.split.get("category_depth") is not None:  # split=category_aware: levels of the path that make a group
        _check_number(cfg, "split.category_depth", integer=True, minimum=1)
    for key, maximum in (("lora.dropout", 0.99), ("train.warmup_ratio", 1.0)):
        if OmegaConf.select(cfg, key) > maximum:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)!r} must be at most {maximum} (a fraction).")
    _check_wise_ft(cfg)
    if cfg.train.get("log_every_n_steps") is not None:
        _check_number(cfg, "train.log_every_n_steps", integer=True, minimum=1)
    if cfg.train.get("checkpoint_minutes") is not None:
        _check_number(cfg, "train.checkpoint_minutes", integer=False, minimum=0)
    if cfg.backbone.get("frozen_layers"):
        _check_number(cfg, "backbone.frozen_layers", integer=True, minimum=0)
        if finetune.method(cfg.backbone) != "full":
            raise ConfigError(
                f"backbone.frozen_layers={cfg.backbone.frozen_layers} applies to backbone.finetune=full; with LoRA "
                f"choose the layers through backbone.lora_targets, or set it to 0."
            )
    if cfg.train.get("folds_trained") is not None:
        _check_number(cfg, "train.folds_trained", integer=True, minimum=1)
        if cfg.train.folds_trained > cfg.split.n_folds:
            raise ConfigError(
                f"train.folds_trained={cfg.train.folds_trained} is more than split.n_folds={cfg.split.n_folds}; "
                f"use at most {cfg.split.n_folds} (or null for every fold)."
            )
    if cfg.data.get("max_rows") is not None:
        _check_number(cfg, "data.max_rows", integer=True, minimum=1)
    if not isinstance(cfg.tracking.experiment, str) or not cfg.tracking.experiment.strip():
        raise ConfigError(f"tracking.experiment={cfg.tracking.experiment!r} must be a non-empty name.")
    tracking.check_store(tracking.store_of(cfg.tracking.uri, cfg.tracking.artifact_root, cfg.paths.root)[0])
    if cfg.train.scheduler not in ("linear", "cosine", "constant_with_warmup"):
        raise ConfigError(
            f"train.scheduler={cfg.train.scheduler!r} is not known; use linear, cosine or constant_with_warmup."
        )
    thresholds.check(cfg.threshold)
    parts = task_parts(cfg.task)
    for part in parts.values():
        check_template(part.template)
    check_quantization(cfg.backbone)
    head_class(cfg.head.name).check(cfg)
    warn_foreign_head_keys(cfg.head)
    warn_random_backbone(cfg.backbone)
    for part in parts.values():
        prompt_template(part, cfg.head, cfg.backbone)
    joint = task_kind(cfg.task.code).rows_name_their_task
    if joint and cfg.backbone.kind == "encoder":
        raise ConfigError(
            f"task=joint tells QC from QI rows by their prompts, which the encoder backbone="
            f"{cfg.backbone.name} does not use; pick a decoder backbone or train task=qc and task=qi."
        )
    if joint and cfg.tapt.name != "none":
        raise ConfigError(
            "task=joint already trains on both tasks, so there is no other task to pre-train on; use tapt=none."
        )
    if cfg.backbone.kind == "decoder" and cfg.backbone.padding_side != "right":
        raise ConfigError(
            f"backbone.padding_side={cfg.backbone.padding_side}: a decoder classifier needs right "
            f"padding (left padding shifts every row's positions by its pad count); set it to right."
        )
    check_split_for_task(cfg.split.name, cfg.task.code)
    check_category_order(cfg)
    if cfg.register.name and not cfg.tracking.log_model:
        raise ConfigError("register.name needs a logged model; drop tracking.log_model=false.")
    check_methods(cfg)
    distill.check(cfg)
    from relevance.plan import check_fits  # builds the backbone on the meta device: only on a GPU machine

    check_fits(cfg)


def check_methods(cfg: DictConfig) -> None:
    """Refuse augmentation, translator and TAPT choices that cannot work, with the key to change."""
    steps = chosen(cfg.get("augmentation"))
    for step, options in steps:
        step.check(options)
    translator = TranslatorSettings.from_dict(OmegaConf.to_container(cfg.translator, resolve=True))  # its keys
    if any(step.needs_translator(options) for step, options in steps):
        check_translator(translator, cfg.data)
    if cfg.tapt.name not in ("none", "from_other_task"):
        raise ConfigError(f"tapt={cfg.tapt.name} is not known; use tapt=none or tapt=from_other_task.")
    if cfg.tapt.name == "from_other_task" and not cfg.tapt.from_run:
        other = TASKS[cfg.task.code].other
        path = data_file(cfg.data, cfg.paths.cache, other, "train")
        if not path.is_file():
            raise ConfigError(
                f"tapt=from_other_task trains first on the other task's data, but {path} does not "
                f"exist; add {TASKS[other].file_name('train')} to data.dir, give tapt.from_run=<run id>, or use "
                f"tapt=none."
            )


def check_translator(translator: TranslatorSettings, data: DictConfig) -> None:
    if translator.kind == "file":
        if not translator.path and not generated(data):
            raise ConfigError(
                "augmentation=translate with translator=file needs translator.path=<JSON Lines file of "
                "translations> (only data=demo and data=taxonomy bring their own); or pick a model, e.g. "
                "translator=madlad."
            )
        if translator.path and not Path(translator.path).is_file():
            raise ConfigError(
                f"translator.path={translator.path} is not a file; point it at the JSON Lines translations file."
            )
    elif translator.kind in MODEL_TRANSLATORS:
        if translator.source == "hub" and not hub_model_available(translator.hub_id):
            raise ConfigError(
                f"translator={translator.name} ({translator.hub_id}) is not on this machine and the hub "
                f"cannot be reached; use translator=file with a translations file offline."
            )
    else:
        raise ConfigError(
            f"translator.kind={translator.kind!r} is not known; use file or {' or '.join(MODEL_TRANSLATORS)}."
        )


def warn_random_backbone(backbone) -> None:
    """backbone=tiny is a random model for tests and wiring checks: it learns nothing a threshold can't say (on
    the demo its F1 stays within 0.01 of the all-positive floor at any tried lr and epochs), so say so before a run
    that would end refused by train.require_learning."""
    if backbone.get("source") == "tiny":
        log.warning(
            "backbone=tiny is a random 2-layer model for tests: it does not learn the demo or real data (its F1 "
            "stays at the all-positive floor) and no champion is registered from it; to train a model, use "
            "backbone=gemma3_270m or experiment=offline_best (both install offline)."
        )


def warn_foreign_head_keys(head) -> None:
    """Warn of head keys the chosen head's own YAML does not declare: another choice set them (an experiment
    file's `head.catalogue_margin` kept after `head=classifier`), and this head ignores them."""
    declared = CONF / "head" / f"{head.name}.yaml"
    if not declared.is_file():  # a head composed from another config folder: its keys are its own
        return
    foreign = sorted(set(head) - set(OmegaConf.load(declared)))
    if foreign:
        log.warning(
            "head=%s does not read %s (set by another choice, such as an experiment file); ignored. Drop them, "
            "or choose the head that reads them.",
            head.name,
            ", ".join(f"head.{key}" for key in foreign),
        )


def check_quantization(backbone) -> None:
    """backbone.quantization=4bit (QLoRA, as Tredence ran Gemma-3-12B): NF4 weights through bitsandbytes, which
    needs a CUDA GPU; LoRA only (a full fine-tune cannot train 4-bit weights)."""
    quantization = backbone.get("quantization")
    if quantization in (None, "none"):
        return
    if quantization != "4bit":
        raise ConfigError(f"backbone.quantization={quantization!r} is not known; use 4bit or null.")
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "backbone.quantization=4bit (QLoRA) needs a CUDA GPU and this machine has none; set it to null."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("backbone.quantization=4bit needs bitsandbytes: pip install -e .[qlora]")
    if finetune.method(backbone) == "full":
        raise ConfigError(
            "backbone.quantization=4bit trains LoRA adapters on frozen 4-bit weights; set backbone.finetune=lora."
        )


def check_category_order(cfg) -> None:
    order = cfg.clean.get("category_order", "root_first")
    if order not in CATEGORY_ORDERS:
        raise ConfigError(f"clean.category_order={order!r} is not known; use {' or '.join(CATEGORY_ORDERS)}.")
    tags = (cfg.get("augmentation") or {}).get("tags") or {}
    if order == "leaf_first" and tags.get("hierarchy"):
        raise ConfigError(
            "clean.category_order=leaf_first rewrites the category path that augmentation.tags.hierarchy has "
            "already tagged level by level; use one of the two (augmentation.tags.hierarchy=false)."
        )


def _check_wise_ft(cfg) -> None:
    """train.wise_ft: a share of the trained weights, above 0 (0 would throw every update away) and at most 1; it
    moves whole tensors on one device, which ZeRO-3's shards are not."""
    keep = cfg.train.get("wise_ft", 1.0)
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ConfigError(
            f"train.wise_ft={keep!r} is the trained weights' share of the final ones: a number above 0 and at most "
            f"1 (1: the model as trained)."
        )
    if keep < 1 and zero_stage(cfg.strategy) == 3:
        raise ConfigError(
            f"train.wise_ft={keep} moves each trained weight back toward its start on one device, where strategy="
            f"{cfg.strategy.name} (ZeRO-3) leaves each device a shard of it; use strategy=deepspeed_stage_2 or ddp, "
            f"or train.wise_ft=1."
        )
