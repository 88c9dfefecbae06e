"""The only module that knows the order of the stages:
read -> clean -> split -> format -> train per fold -> out-of-fold scores -> metrics -> MLflow -> bundle/registry."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import mlflow
from omegaconf import DictConfig, OmegaConf

from relevance import metrics, plots, tracking
from relevance.backbones import load_model, load_tokenizer, resolve_source
from relevance.augment import rewrite_text
from relevance.clean import clean_records
from relevance.data.reader import read_records
from relevance.data.sources import data_file
from relevance.datamodule import PairDataModule
from relevance.errors import ConfigError
from relevance.formatting import check_template, fixed_prompt_tokens, format_inputs, prompt_template
from relevance.heads import build_head
from relevance.module import RelevanceModule, apply_lora, gather_scores
from relevance.runtime import resolve_runtime
from relevance.serving import log_model, write_bundle
from relevance.splits import assign_folds, check_split_for_task

log = logging.getLogger(__name__)


def _check_number(cfg: DictConfig, key: str, integer: bool, minimum: float, strict: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not number or value < minimum or (strict and value == minimum):
        raise ConfigError(f"{key}={value!r} must be {'an integer' if integer else 'a number'} "
                          f"{'>' if strict else '>='} {minimum}.")


def check_config(cfg: DictConfig) -> None:
    """Refuse combinations that cannot work, before any data is read or model loaded."""
    _check_number(cfg, "train.lr", integer=False, minimum=0, strict=True)
    for key in ("train.weight_decay", "train.warmup_ratio", "lora.dropout", "lora.alpha"):
        _check_number(cfg, key, integer=False, minimum=0)
    for key, minimum in (("train.batch_size", 1), ("train.eval_batch_size", 1), ("train.epochs", 1),
                         ("train.accumulate_grad_batches", 1), ("train.max_length", 8), ("lora.r", 1),
                         ("split.n_folds", 2)):
        _check_number(cfg, key, integer=True, minimum=minimum)
    if cfg.train.scheduler not in ("linear", "cosine", "constant_with_warmup"):
        raise ConfigError(f"train.scheduler={cfg.train.scheduler!r} is not known; use linear, cosine or "
                          f"constant_with_warmup.")
    check_template(cfg.task.template)
    if cfg.head.name == "yes_no" and cfg.backbone.kind == "encoder":
        raise ConfigError(f"head=yes_no scores the answer with a language-model head, which the encoder "
                          f"backbone={cfg.backbone.name} does not have; use head=classifier or a decoder backbone.")
    prompt_template(cfg.task, cfg.head, cfg.backbone)
    if cfg.backbone.kind == "decoder" and cfg.backbone.padding_side != "right":
        raise ConfigError(f"backbone.padding_side={cfg.backbone.padding_side}: a decoder classifier needs right "
                          f"padding (left padding shifts every row's positions by its pad count); set it to right.")
    check_split_for_task(cfg.split.name, cfg.task.code)
    if cfg.register.name and not cfg.tracking.log_model:
        raise ConfigError("register.name needs a logged model; drop tracking.log_model=false.")


def load_training_rows(cfg: DictConfig):
    """Cleaned (and optionally subsampled) training rows, the cleaning report, and the dev rows if labelled."""
    task = cfg.task.code
    records = read_records(data_file(cfg.data, cfg.paths.cache, task, "train"), task, require_label=True)
    records, report = clean_records(records, lowercase=cfg.clean.lowercase)
    if cfg.data.get("max_rows") and len(records) > cfg.data.max_rows:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(records), cfg.data.max_rows, replace=False))
        records = [records[i] for i in keep]
    records = rewrite_text(records, cfg.get("augmentation"))
    dev = None
    dev_path = data_file(cfg.data, cfg.paths.cache, task, "dev")
    if cfg.evaluate_dev and dev_path.is_file():
        dev_rows, _ = clean_records(read_records(dev_path, task), lowercase=cfg.clean.lowercase)
        if dev_rows and all(r.label is not None for r in dev_rows):
            dev = rewrite_text(dev_rows, cfg.get("augmentation"))  # only the demo's dev carries labels
    return records, report, dev


def train_fold(cfg, runtime, backbone_location, tokenizer, max_length: int, train_inputs, train_labels,
               score_inputs: list, fold: int, adapter_dir: Path) -> list[np.ndarray]:
    """Fresh base + LoRA, trained on the other folds; returns the scores of each list in `score_inputs`."""
    L.seed_everything(cfg.seed + fold, workers=True, verbose=False)
    base = load_model(cfg.backbone, backbone_location, tokenizer, runtime.load_dtype, cfg.head.name)
    model = apply_lora(base, cfg.backbone.lora_targets, cfg.backbone.head_module, cfg.lora.r, cfg.lora.alpha,
                       cfg.lora.dropout, cfg.head.name)
    module = RelevanceModule(model, build_head(cfg.head, tokenizer), cfg.train.lr, cfg.train.weight_decay,
                             cfg.train.warmup_ratio, cfg.train.scheduler)
    trainer = L.Trainer(accelerator=runtime.accelerator, devices=runtime.devices, strategy=runtime.strategy(),
                        precision=runtime.precision, max_epochs=cfg.train.epochs,
                        accumulate_grad_batches=cfg.train.accumulate_grad_batches,
                        gradient_clip_val=cfg.train.gradient_clip, limit_train_batches=cfg.train.limit_train_batches,
                        deterministic=runtime.accelerator == "cpu", logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=cfg.progress, num_sanity_val_steps=0,
                        use_distributed_sampler=False)  # batches are length-grouped by our own sampler
    common = dict(batch_size=cfg.train.batch_size, eval_batch_size=cfg.train.eval_batch_size,
                  max_length=max_length, seed=cfg.seed + fold, num_workers=cfg.train.num_workers)
    trainer.fit(module, datamodule=PairDataModule(tokenizer, train_inputs, train_labels, None, **common))
    results = []
    for inputs in score_inputs:
        outputs = trainer.predict(module, datamodule=PairDataModule(tokenizer, None, None, inputs, **common))
        results.append(gather_scores(outputs, len(inputs)))
    if trainer.is_global_zero:
        model.save_pretrained(adapter_dir)  # adapter + head only; the base is referenced, never copied
    return results


def evaluate(labels, scores, languages, seen: set[str], threshold: float | None = None) -> dict:
    """F1 at 0.5 and at the best threshold, the floor, and per-language F1 at `threshold` (default: the best)."""
    at_half = metrics.scores_at(labels, scores, 0.5)
    best = metrics.best_f1_threshold(labels, scores)
    threshold = best.threshold if threshold is None else threshold
    return {"at_half": at_half, "best": best, "floor": metrics.all_positive_f1(labels),
            "at_threshold": metrics.scores_at(labels, scores, threshold),
            "languages": metrics.per_language(languages, labels, scores, threshold, seen)}


def _metric_dict(result: dict, prefix: str) -> dict[str, float]:
    values = {**result["at_half"].as_dict(f"{prefix}at_0.5_"), **result["best"].as_dict(f"{prefix}best_"),
              f"{prefix}all_positive_f1": result["floor"]}
    values.pop(f"{prefix}at_0.5_threshold")
    for row in result["languages"]:
        values[f"{prefix}f1_{row['language']}"] = row["f1"]
    return values


def cross_validate(cfg, runtime, location, tokenizer, max_length, inputs, labels, languages, folds, dev_inputs,
                   adapters: Path, parent_run_id: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Train one model per fold (a child MLflow run each); out-of-fold scores and each fold's dev scores."""
    oof = np.full(len(inputs), np.nan)
    dev_scores = []
    seen = set(languages)
    for fold in range(cfg.split.n_folds):
        held_out = np.flatnonzero(folds == fold)
        trained_on = np.flatnonzero(folds != fold)
        with mlflow.start_run(run_name=f"fold-{fold}", nested=True, tags={"relevance.level": "fold"}):
            log.info("fold %d/%d: training on %d rows, scoring %d", fold + 1, cfg.split.n_folds, len(trained_on),
                     len(held_out))
            to_score = [[inputs[i] for i in held_out]] + ([dev_inputs] if dev_inputs else [])
            started = time.perf_counter()
            scored = train_fold(cfg, runtime, location, tokenizer, max_length, [inputs[i] for i in trained_on],
                                labels[trained_on], to_score, fold, adapters / f"fold_{fold}")
            mlflow.log_metric("fold_seconds", time.perf_counter() - started)
            oof[held_out] = scored[0]
            dev_scores += scored[1:]
            result = evaluate(labels[held_out], scored[0], [languages[i] for i in held_out], seen)
            mlflow.log_metrics({"f1_at_0.5": result["at_half"].f1, "best_f1": result["best"].f1,
                                "best_threshold": result["best"].threshold, "rows_validation": len(held_out)})
        mlflow.log_metric("fold_f1_at_0.5", result["at_half"].f1, step=fold, run_id=parent_run_id)
    return oof, dev_scores


def report(cfg, labels, oof, languages, folds, dev, dev_scores, plots_dir: Path) -> tuple[dict, float, dict]:
    """Headline metrics, per-language rows and plots. The threshold comes from out-of-fold scores only; dev is
    judged at it."""
    seen = set(languages)
    result = evaluate(labels, oof, languages, seen)
    summary = _metric_dict(result, "oof_")
    fold_f1 = [metrics.scores_at(labels[folds == k], oof[folds == k], 0.5).f1 for k in range(cfg.split.n_folds)]
    summary["oof_fold_mean_f1_at_0.5"] = float(np.mean(fold_f1))
    summary["oof_fold_std_f1_at_0.5"] = float(np.std(fold_f1))
    threshold = result["best"].threshold
    title = f"{cfg.backbone.name} {cfg.task.code}"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots.threshold_plot(*metrics.threshold_curve(labels, oof), result["best"], result["floor"],
                         f"{title}: out-of-fold F1", plots_dir / "threshold_f1.png")
    plots.language_plot(result["languages"], f"{title}: out-of-fold F1 per language", plots_dir / "language_f1.png")
    by_language = {"out-of-fold": result["languages"]}
    if dev_scores:
        dev_labels = np.array([r.label for r in dev])
        dev_result = evaluate(dev_labels, np.mean(dev_scores, axis=0), [r.language for r in dev], seen, threshold)
        summary.update(_metric_dict(dev_result, "dev_"))
        summary["dev_f1_at_oof_threshold"] = dev_result["at_threshold"].f1
        plots.language_plot(dev_result["languages"], f"{title}: dev F1 per language (fold ensemble)",
                            plots_dir / "dev_language_f1.png")
        by_language["dev"] = dev_result["languages"]
    return summary, threshold, by_language


def run(cfg: DictConfig) -> dict:
    """Train K folds, log everything to MLflow, and return the headline metrics and the run and model ids."""
    check_config(cfg)
    runtime = resolve_runtime(cfg.strategy.name, cfg.train.precision, cfg.backbone.dtype)
    records, clean_report, dev = load_training_rows(cfg)
    folds = assign_folds(records, cfg.split.name, cfg.split.n_folds, cfg.seed, cfg.split.get("category_depth", 2))
    encoder = cfg.backbone.kind == "encoder"
    template = prompt_template(cfg.task, cfg.head, cfg.backbone)
    inputs = format_inputs(records, template, encoder)
    dev_inputs = format_inputs(dev, template, encoder) if dev else None
    labels = np.array([r.label for r in records])
    languages = [r.language for r in records]
    location = resolve_source(cfg.backbone, cfg.paths.cache)
    tokenizer = load_tokenizer(cfg.backbone, location)
    build_head(cfg.head, tokenizer)  # answer words that tokenise badly fail here, before any training
    max_length = cfg.train.max_length + fixed_prompt_tokens(tokenizer, template, encoder)

    tracking.setup(cfg.tracking.uri or tracking.default_tracking_uri(cfg.paths.root), cfg.tracking.experiment,
                   cfg.tracking.artifact_root or Path(cfg.paths.root) / "mlruns" / "artifacts")
    with tempfile.TemporaryDirectory() as scratch, \
            mlflow.start_run(run_name=cfg.tracking.run_name, tags={"relevance.level": "parent"}) as parent:
        scratch = Path(scratch)
        mlflow.log_params(tracking.flatten(cfg))
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        mlflow.log_metrics({"rows_train": len(records), "rows_dropped_empty_query": clean_report.dropped_empty_query})
        oof, dev_scores = cross_validate(cfg, runtime, location, tokenizer, max_length, inputs, labels, languages,
                                         folds, dev_inputs, scratch / "bundle" / "adapters", parent.info.run_id)
        summary, threshold, by_language = report(cfg, labels, oof, languages, folds, dev, dev_scores,
                                                 scratch / "plots")
        mlflow.log_metrics(summary)
        mlflow.log_table(pd.DataFrame([dict(row, scored=name) for name, rows in by_language.items() for row in rows]),
                         "language_f1.json")
        mlflow.log_artifacts(str(scratch / "plots"), "plots")
        mlflow.log_table({"id": [r.id for r in records], "language": languages, "fold": folds.tolist(),
                          "label": labels.tolist(), "score": oof.tolist()}, "oof_scores.json")
        model_uri = None
        if cfg.tracking.log_model:
            meta = {"task": cfg.task.code, "template": template, "encoder": encoder,
                    "head": OmegaConf.to_container(cfg.head, resolve=True),
                    "augmentation": (OmegaConf.to_container(cfg.augmentation, resolve=True)
                                     if cfg.get("augmentation") else {}),
                    "threshold": threshold, "max_length": max_length, "lowercase": cfg.clean.lowercase,
                    "eval_batch_size": cfg.train.eval_batch_size,
                    "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
                    "folds": [f"fold_{k}" for k in range(cfg.split.n_folds)], "run_id": parent.info.run_id}
            model_uri = log_model(write_bundle(scratch / "bundle", meta), cfg.task.code)
        if cfg.register.name:
            version = tracking.register(model_uri, cfg.register.name, cfg.register.alias)
            mlflow.set_tag("relevance.registered", f"{cfg.register.name}/{version}")
        return {**summary, "languages": by_language, "run_id": parent.info.run_id, "model_uri": model_uri,
                "tracking_uri": mlflow.get_tracking_uri()}
