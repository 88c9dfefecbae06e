"""The only module that knows the order of the stages:
read -> clean -> extra rows -> rewrite text -> split -> format -> [TAPT stage 1] -> [self-validation pass] ->
train per fold -> out-of-fold scores -> metrics -> MLflow -> bundle/registry."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import mlflow
from omegaconf import DictConfig, OmegaConf

from relevance import finetune, health, metrics, packaged_e5, plots, thresholds, tracking
from relevance.backbones import CosineScore, hub_model_available, load_model, load_tokenizer, resolve_source
from relevance.augment import rewrite_text, synthesize_mode
from relevance.augment.hard_negatives import hard_negatives
from relevance.augment.self_validation import flag_contradictions, removal_counts
from relevance.augment.translate import synthesize
from relevance.clean import clean_records
from relevance.data.reader import read_records
from relevance.data.sources import GENERATED, data_file, own_translations
from relevance.datamodule import PairDataModule
from relevance.errors import ConfigError
from relevance.formatting import check_template, fixed_prompt_tokens, format_by_task, format_inputs, prompt_template
from relevance.heads import build_head
from relevance.module import RelevanceModule, all_ranks, auto_head_lr, gather_scores, init_head
from relevance.runtime import global_rank, resolve_runtime
from relevance.serving import log_model, write_bundle
from relevance.records import Record
from relevance.splits import assign_folds, check_split_for_task
from relevance.sweep import trial as sweep_trial
from relevance.translation import Translations

OTHER_TASK = {"QC": "QI", "QI": "QC"}

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
    if cfg.train.get("head_lr") not in (None, "auto"):
        _check_number(cfg, "train.head_lr", integer=False, minimum=0, strict=True)
    finetune.method(cfg.backbone)
    for key in ("train.weight_decay", "train.warmup_ratio", "lora.dropout", "lora.alpha"):
        _check_number(cfg, key, integer=False, minimum=0)
    for key, minimum in (("train.batch_size", 1), ("train.eval_batch_size", 1), ("train.epochs", 1),
                         ("train.accumulate_grad_batches", 1), ("train.max_length", 8), ("lora.r", 1),
                         ("split.n_folds", 2)):
        _check_number(cfg, key, integer=True, minimum=minimum)
    if cfg.train.scheduler not in ("linear", "cosine", "constant_with_warmup"):
        raise ConfigError(f"train.scheduler={cfg.train.scheduler!r} is not known; use linear, cosine or "
                          f"constant_with_warmup.")
    if not isinstance(cfg.get("threshold"), DictConfig):
        raise ConfigError(f"threshold={cfg.get('threshold')!r}: the threshold is now a group of settings; fix one "
                          f"with threshold.method=fixed threshold.value=0.4 (or leave the default, exact).")
    thresholds.check(cfg.threshold)
    parts = task_parts(cfg)
    for part in parts.values():
        check_template(part.template)
    if cfg.head.name == "bi_encoder" and cfg.backbone.kind != "encoder":
        raise ConfigError(f"head=bi_encoder encodes the query and the target apart with an encoder; "
                          f"backbone={cfg.backbone.name} is a {cfg.backbone.kind}. Use an encoder backbone such as "
                          f"multilingual_e5_small, or head=classifier.")
    if cfg.head.name == "yes_no" and cfg.backbone.kind == "encoder":
        raise ConfigError(f"head=yes_no scores the answer with a language-model head, which the encoder "
                          f"backbone={cfg.backbone.name} does not have; use head=classifier or a decoder backbone.")
    for part in parts.values():
        prompt_template(part, cfg.head, cfg.backbone)
    if cfg.task.code == "JOINT" and cfg.backbone.kind == "encoder":
        raise ConfigError(f"task=joint tells QC from QI rows by their prompts, which the encoder backbone="
                          f"{cfg.backbone.name} does not use; pick a decoder backbone or train task=qc and task=qi.")
    if cfg.task.code == "JOINT" and cfg.tapt.name != "none":
        raise ConfigError("task=joint already trains on both tasks, so there is no other task to pre-train on; "
                          "use tapt=none.")
    if cfg.backbone.kind == "decoder" and cfg.backbone.padding_side != "right":
        raise ConfigError(f"backbone.padding_side={cfg.backbone.padding_side}: a decoder classifier needs right "
                          f"padding (left padding shifts every row's positions by its pad count); set it to right.")
    check_split_for_task(cfg.split.name, cfg.task.code)
    if cfg.register.name and not cfg.tracking.log_model:
        raise ConfigError("register.name needs a logged model; drop tracking.log_model=false.")
    check_methods(cfg)


def check_methods(cfg: DictConfig) -> None:
    """Refuse augmentation, translator and TAPT choices that cannot work, with the key to change."""
    augmentation = cfg.get("augmentation") or {}
    translate = augmentation.get("translate")
    negatives = augmentation.get("hard_negatives")
    validation = augmentation.get("self_validation")
    if translate and translate.mode not in ("concat", "synthesize", "both"):
        raise ConfigError(f"augmentation.translate.mode={translate.mode!r} is not known; use concat, synthesize "
                          f"or both.")
    if translate and translate.mode != "concat":
        _check_number(cfg, "augmentation.translate.rows_per_language", integer=True, minimum=1)
    if translate or (negatives and negatives.get("translate_to")):
        check_translator(cfg)
    if negatives:
        _check_number(cfg, "augmentation.hard_negatives.rows", integer=True, minimum=1)
        window = list(negatives.window)
        if len(window) != 2 or not all(isinstance(w, int) for w in window) or not 0 <= window[0] < window[1]:
            raise ConfigError(f"augmentation.hard_negatives.window={window} must be two ranks [low, high] with "
                              f"0 <= low < high, e.g. [20, 50].")
        packaged = negatives.embedder == packaged_e5.HUB_ID and packaged_e5.installed()
        if negatives.embedder != "tfidf" and not packaged and not hub_model_available(negatives.embedder):
            raise ConfigError(f"augmentation.hard_negatives.embedder={negatives.embedder} is not on this machine "
                              f"and the hub cannot be reached; use embedder=tfidf offline, or download it first.")
    if validation:
        if not isinstance(validation.confidence, (int, float)) or not 0.5 < validation.confidence < 1:
            raise ConfigError(f"augmentation.self_validation.confidence={validation.confidence!r} must be between "
                              f"0.5 and 1 (a row is flagged when the model is at least this sure of the other label).")
        if validation.action not in ("drop", "relabel"):
            raise ConfigError(f"augmentation.self_validation.action={validation.action!r}; use drop or relabel.")
    if cfg.tapt.name not in ("none", "from_other_task"):
        raise ConfigError(f"tapt={cfg.tapt.name} is not known; use tapt=none or tapt=from_other_task.")
    if cfg.tapt.name == "from_other_task" and not cfg.tapt.from_run:
        other = OTHER_TASK[cfg.task.code]
        path = data_file(cfg.data, cfg.paths.cache, other, "train")
        if not path.is_file():
            raise ConfigError(f"tapt=from_other_task trains first on the other task's data, but {path} does not "
                              f"exist; add train_{other}.txt to data.dir, give tapt.from_run=<run id>, or use "
                              f"tapt=none.")


def check_translator(cfg: DictConfig) -> None:
    translator = cfg.translator
    if translator.kind == "file":
        if not translator.path and cfg.data.name not in GENERATED:
            raise ConfigError("augmentation=translate with translator=file needs translator.path=<JSON Lines file of "
                              "translations> (only data=demo and data=taxonomy bring their own); or pick a model, e.g. "
                              "translator=madlad.")
        if translator.path and not Path(translator.path).is_file():
            raise ConfigError(f"translator.path={translator.path} is not a file; point it at the JSON Lines "
                              f"translations file.")
    elif translator.kind in ("seq2seq", "causal"):
        if translator.source == "hub" and not hub_model_available(translator.hub_id):
            raise ConfigError(f"translator={translator.name} ({translator.hub_id}) is not on this machine and the hub "
                              f"cannot be reached; use translator=file with a translations file offline.")
    else:
        raise ConfigError(f"translator.kind={translator.kind!r} is not known; use file, seq2seq or causal.")


def make_translations(cfg) -> Translations:
    """The translator of this run; with generated data (demo, taxonomy) and no file given, the data's own file."""
    translator = OmegaConf.to_container(cfg.translator, resolve=True)
    if translator["kind"] == "file" and not translator.get("path"):
        own_file = own_translations(cfg.data, cfg.paths.cache)
        translator["path"] = str(own_file) if own_file else None
    return Translations(OmegaConf.create(translator), Path(cfg.paths.cache), cfg.clean.lowercase, cfg.progress)


@dataclass
class TrainingData:
    """The rows of one run. `records` are scored out of fold against `labels`; extras (synthesized translations,
    hard negatives) only train, in the folds where the row they came from trains. Self-validation may clear
    `keep` or flip `train_labels`, which changes what trains, never what is judged."""

    records: list[Record]
    inputs: list
    labels: np.ndarray
    folds: np.ndarray
    extra_inputs: list = field(default_factory=list)
    extra_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    extra_source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    extra_follows_source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    keep: np.ndarray | None = None
    train_labels: np.ndarray | None = None

    def __post_init__(self):
        self.keep = np.ones(len(self.records), dtype=bool) if self.keep is None else self.keep
        self.train_labels = self.labels.copy() if self.train_labels is None else self.train_labels

    @property
    def languages(self) -> list[str]:
        return [r.language for r in self.records]

    def training_rows(self, fold: int | None) -> tuple[list, np.ndarray]:
        """Inputs and labels that train the model of `fold` (None: every row, for the full-data refit)."""
        outside = np.ones(len(self.folds), dtype=bool) if fold is None else self.folds != fold
        own = self.keep & outside
        source = self.extra_source
        extra = outside[source] & (self.keep[source] | ~self.extra_follows_source)
        flip = self.extra_follows_source & (self.train_labels[source] != self.labels[source])
        extra_labels = np.where(flip, 1 - self.extra_labels, self.extra_labels)
        inputs = [self.inputs[i] for i in np.flatnonzero(own)] + [self.extra_inputs[j] for j in np.flatnonzero(extra)]
        return inputs, np.concatenate([self.train_labels[own], extra_labels[extra]]).astype(int)


def read_task_rows(cfg, task: str, max_rows: int | None):
    """Cleaned training rows of one task, optionally a random subset."""
    records = read_records(data_file(cfg.data, cfg.paths.cache, task, "train"), task, require_label=True)
    records, report = clean_records(records, lowercase=cfg.clean.lowercase)
    if max_rows and len(records) > max_rows:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(records), max_rows, replace=False))
        records = [records[i] for i in keep]
    return records, report


def task_parts(cfg) -> dict[str, DictConfig]:
    """Task code -> task config: one entry, or QC and QI for task=joint."""
    if cfg.task.code == "JOINT":
        return {part.code: part for part in cfg.task.parts.values()}
    return {cfg.task.code: cfg.task}


def _task_rows(cfg, task: str, translations: Translations, counts: dict):
    """One task's cleaned rows, its training-only extras (with their source index) and its labelled dev rows."""
    augmentation = cfg.get("augmentation")
    records, report = read_task_rows(cfg, task, cfg.data.get("max_rows"))
    extras, sources, follows = [], [], []
    if synthesize_mode(augmentation):
        rows, source = synthesize(records, augmentation.translate, translations, cfg.seed)
        extras, sources, follows = extras + rows, sources + [source], follows + [True] * len(rows)
        counts["rows_synthesized"] = counts.get("rows_synthesized", 0) + len(rows)
    if augmentation and augmentation.get("hard_negatives"):
        rows, source = hard_negatives(records, augmentation.hard_negatives, translations, Path(cfg.paths.cache),
                                      cfg.seed + 1)
        extras, sources, follows = extras + rows, sources + [source], follows + [False] * len(rows)
        counts["rows_hard_negatives"] = counts.get("rows_hard_negatives", 0) + len(rows)
    rewritten = rewrite_text(records + extras, augmentation, translations)
    dev = None
    dev_path = data_file(cfg.data, cfg.paths.cache, task, "dev")
    if cfg.evaluate_dev and dev_path.is_file():
        dev_rows, _ = clean_records(read_records(dev_path, task), lowercase=cfg.clean.lowercase)
        if dev_rows and all(r.label is not None for r in dev_rows):
            dev = rewrite_text(dev_rows, augmentation, translations)  # only the demo's dev carries labels
    source = np.concatenate(sources).astype(int) if sources else np.zeros(0, dtype=int)
    return rewritten[:len(records)], rewritten[len(records):], source, follows, report, dev


def prepare_data(cfg, translations: Translations, templates: dict[str, str], encoder: bool):
    """Read, clean, add training-only rows, rewrite text, split (all tasks together for task=joint, so a query
    never sits on both sides of a fold). Returns the TrainingData, the cleaning report, the labelled dev rows (or
    None) and how many extra rows each augmentation made."""
    records, extras, sources, follows, dev, counts = [], [], [], [], [], {}
    dropped = 0
    for task in templates:
        task_records, task_extras, source, task_follows, report, task_dev = _task_rows(cfg, task, translations, counts)
        sources.append(source + len(records))
        records, extras, follows = records + task_records, extras + task_extras, follows + task_follows
        dev = dev + task_dev if (dev is not None and task_dev) else None
        dropped += report.dropped_empty_query
    report.dropped_empty_query = dropped
    folds = assign_folds(records, cfg.split.name, cfg.split.n_folds, cfg.seed, cfg.split.get("category_depth", 2))
    data = TrainingData(records, format_by_task(records, templates, encoder), np.array([r.label for r in records]),
                        folds, format_by_task(extras, templates, encoder),
                        np.array([r.label for r in extras], dtype=int), np.concatenate(sources).astype(int),
                        np.array(follows, dtype=bool))
    return data, report, dev, counts


def _trainer(cfg, runtime, epochs: int) -> L.Trainer:
    return L.Trainer(accelerator=runtime.accelerator, devices=runtime.devices, num_nodes=runtime.num_nodes,
                     strategy=runtime.strategy(),
                     precision=runtime.precision, max_epochs=epochs,
                     accumulate_grad_batches=cfg.train.accumulate_grad_batches,
                     gradient_clip_val=cfg.train.gradient_clip, limit_train_batches=cfg.train.limit_train_batches,
                     deterministic=runtime.accelerator == "cpu", logger=False, enable_checkpointing=False,
                     enable_model_summary=False, enable_progress_bar=cfg.progress, num_sanity_val_steps=0,
                     use_distributed_sampler=False)  # batches are length-grouped by our own sampler


def train_fold(cfg, runtime, backbone_location, tokenizer, max_length: int, train_inputs, train_labels,
               score_inputs: list, fold: int, adapter_dir: Path | None, init_adapter: Path | None = None,
               epochs: int | None = None, lr: float | None = None, name: str | None = None,
               heldout_labels: np.ndarray | None = None) -> tuple[list[np.ndarray], health.FoldHealth]:
    """Fresh base + LoRA or full fine-tuning (or the TAPT stage-1 weights), trained on the given rows; returns the
    scores of each list in `score_inputs` and whether the fold learned (judged on the first list against
    `heldout_labels` when given), and saves what trained to `adapter_dir`."""
    L.seed_everything(cfg.seed + fold, workers=True, verbose=False)
    base = load_model(cfg.backbone, backbone_location, tokenizer, runtime.load_dtype, cfg.head)
    if cfg.head.name == "classifier":
        init_head(base, cfg.backbone.head_module)
    model = finetune.prepare(base, cfg.backbone, cfg.lora, cfg.head.name, init_adapter)
    head_lr = cfg.train.get("head_lr")
    if head_lr == "auto" and cfg.head.name == "classifier":
        head_lr = auto_head_lr(model, cfg.backbone.head_module, tokenizer, train_inputs, max_length)
        log.info("%s: head learning rate %.3g (train.head_lr=auto)", name or f"fold {fold}", head_lr)
    elif head_lr == "auto" and cfg.head.name == "bi_encoder":
        head_lr = CosineScore.LEARNING_RATE
    module = RelevanceModule(model, build_head(cfg.head, tokenizer), lr or cfg.train.lr, cfg.train.weight_decay,
                             cfg.train.warmup_ratio, cfg.train.scheduler,
                             head_lr=head_lr if isinstance(head_lr, (int, float)) else None,
                             head_module=cfg.backbone.head_module)
    trainer = _trainer(cfg, runtime, epochs or cfg.train.epochs)
    common = dict(batch_size=cfg.train.batch_size, eval_batch_size=cfg.train.eval_batch_size,
                  max_length=max_length, seed=cfg.seed + fold, num_workers=cfg.train.num_workers)
    trainer.fit(module, datamodule=PairDataModule(tokenizer, train_inputs, train_labels, None, **common))
    results = []
    for inputs in score_inputs:
        outputs = trainer.predict(module, datamodule=PairDataModule(tokenizer, None, None, inputs, **common))
        results.append(gather_scores(all_ranks(outputs), len(inputs)))
    if trainer.is_global_zero and adapter_dir is not None:
        finetune.save(model, adapter_dir, cfg.backbone)  # adapter + head, or the unfrozen weights; never the base
    gain = health.heldout_gain(heldout_labels, results[0]) if heldout_labels is not None else float("nan")
    learned = health.FoldHealth(name or f"fold {fold}", module.final_loss(),
                                health.constant_guess_loss(np.asarray(train_labels)),
                                health.scores_std(results[0]) if results else float("nan"), gain)
    health.warn_if_suspect(learned)
    return results, learned



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


@dataclass
class Model:
    """What every training stage needs to build and feed the model."""

    location: str
    tokenizer: object
    max_length: int
    init_adapter: Path | None = None


def cross_validate(cfg, runtime, model: Model, data: TrainingData, dev_inputs, adapters: Path | None,
                   parent_run_id: str, stage: str = "", epochs: int | None = None,
                   trial: sweep_trial.NoTrial = sweep_trial.NoTrial()) -> tuple[np.ndarray, list[np.ndarray]]:
    """Train one model per fold (a child MLflow run each); out-of-fold scores and each fold's dev scores.
    In a sweep, the objective on the folds done so far goes to the trial after each fold (it may be pruned)."""
    oof = np.full(len(data.records), np.nan)
    dev_scores = []
    folds_health: list[health.FoldHealth] = []
    seen = set(data.languages)
    for fold in range(cfg.split.n_folds):
        held_out = np.flatnonzero(data.folds == fold)
        train_inputs, train_labels = data.training_rows(fold)
        with mlflow.start_run(run_name=f"{stage}fold-{fold}", nested=True,
                              tags={"relevance.level": "fold", "relevance.stage": stage.rstrip("/") or "final"}):
            log.info("%sfold %d/%d: training on %d rows, scoring %d", stage, fold + 1, cfg.split.n_folds,
                     len(train_inputs), len(held_out))
            to_score = [[data.inputs[i] for i in held_out]] + ([dev_inputs] if dev_inputs else [])
            started = time.perf_counter()
            scored, learned = train_fold(cfg, runtime, model.location, model.tokenizer, model.max_length,
                                         train_inputs, train_labels, to_score, fold,
                                         adapters / f"fold_{fold}" if adapters else None, model.init_adapter, epochs,
                                         name=f"{stage}fold {fold}", heldout_labels=data.labels[held_out])
            folds_health.append(learned)
            mlflow.log_metrics({"fold_seconds": time.perf_counter() - started, "train_loss_final": learned.final_loss,
                                "train_loss_constant_guess": learned.guess_loss, "score_std": learned.score_std,
                                "heldout_gain_over_floor": learned.heldout_gain})
            mlflow.set_tag("relevance.learned", str(not learned.degenerate).lower())
            oof[held_out] = scored[0]
            dev_scores += scored[1:]
            result = evaluate(data.labels[held_out], scored[0], [data.languages[i] for i in held_out], seen)
            mlflow.log_metrics({"f1_at_0.5": result["at_half"].f1, "best_f1": result["best"].f1,
                                "best_threshold": result["best"].threshold, "rows_validation": len(held_out),
                                "rows_trained": len(train_inputs)})
        if not stage:
            so_far = sweep_trial.objective_so_far(cfg.sweep.metric, data.labels, oof,
                                                  np.array([r.task for r in data.records]))
            mlflow.log_metrics({"fold_f1_at_0.5": result["at_half"].f1, "oof_best_f1_so_far": so_far}, step=fold,
                               run_id=parent_run_id)
            trial.report(so_far, fold)
    if cfg.train.get("require_learning", True):
        health.check_run(folds_health)
    return oof, dev_scores


def _logged_tapt_adapter(run_id: str, scratch: Path, tracking_uri: str) -> Path:
    """The stage-1 adapter of an earlier run: the run itself (a stage-1 child) or the stage-1 child of a parent.
    Read from the shared store by name, so that every rank of a distributed run finds it."""
    client = mlflow.tracking.MlflowClient(tracking_uri)
    candidates = [run_id]
    try:
        experiment = client.get_run(run_id).info.experiment_id
        children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run_id}' and "
                                                    f"tags.`relevance.stage` = 'tapt'")
        candidates += [child.info.run_id for child in children]
    except mlflow.exceptions.MlflowException:
        raise ConfigError(f"tapt.from_run={run_id} is not a run in this tracking store; give the id of a run trained "
                          f"with tapt=from_other_task, or leave tapt.from_run null.") from None
    for candidate in candidates:
        try:
            return Path(mlflow.artifacts.download_artifacts(run_id=candidate, artifact_path="tapt_adapter",
                                                            dst_path=str(scratch / "tapt_download"),
                                                            tracking_uri=tracking_uri))
        except (mlflow.exceptions.MlflowException, OSError):
            continue
    raise ConfigError(f"tapt.from_run={run_id}: that run has no tapt_adapter artifact; give the id of a run trained "
                      f"with tapt=from_other_task, or leave tapt.from_run null.")


def tapt_stage(cfg, runtime, model: Model, encoder: bool, translations: Translations, scratch: Path,
               tracking_uri: str) -> Path:
    """Stage 1 of task-adaptive pre-training: the adapter trained on the other task (a child run, its adapter
    logged as `tapt_adapter`), or downloaded from the run named by tapt.from_run."""
    if cfg.tapt.from_run:
        return _logged_tapt_adapter(str(cfg.tapt.from_run), scratch, tracking_uri)
    other = OTHER_TASK[cfg.task.code]
    other_task = cfg.tapt.tasks[other.lower()]
    records, _ = read_task_rows(cfg, other, cfg.tapt.max_rows)
    records = rewrite_text(records, cfg.get("augmentation"), translations)  # same text rewrites as stage 2
    template = prompt_template(other_task, cfg.head, cfg.backbone)
    inputs = format_inputs(records, template, encoder)
    adapter = scratch / "tapt_adapter"
    with mlflow.start_run(run_name=f"tapt-stage1-{other.lower()}", nested=True,
                          tags={"relevance.level": "stage", "relevance.stage": "tapt"}):
        log.info("TAPT stage 1: training on %d %s rows", len(inputs), other)
        started = time.perf_counter()
        train_fold(cfg, runtime, model.location, model.tokenizer, model.max_length, inputs,
                   np.array([r.label for r in records]), [], -1, adapter, epochs=cfg.tapt.epochs, lr=cfg.tapt.lr,
                   name="TAPT stage 1")
        mlflow.log_metrics({"rows_trained": len(inputs), "stage_seconds": time.perf_counter() - started})
        mlflow.log_artifacts(str(adapter), "tapt_adapter")
    return adapter


def self_validation_stage(cfg, runtime, model: Model, data: TrainingData, parent_run_id: str) -> dict:
    """First K-fold pass; flag contradicted rows, drop or relabel them in `data`; log counts and the list."""
    options = cfg.augmentation.self_validation
    oof, _ = cross_validate(cfg, runtime, model, data, None, None, parent_run_id, stage="self-validation/",
                            epochs=options.epochs)
    flagged = flag_contradictions(data.labels, oof, options, [r.query for r in data.records],
                                  [r.target for r in data.records])
    if options.action == "relabel":
        data.train_labels = np.where(flagged, 1 - data.labels, data.labels)
    else:
        data.keep = ~flagged
    counts = removal_counts(data.languages, data.labels, flagged)
    rows = np.flatnonzero(flagged)
    mlflow.log_table({"id": [data.records[i].id for i in rows], "language": [data.languages[i] for i in rows],
                      "label": data.labels[rows].tolist(), "score": oof[rows].tolist(),
                      "query": [data.records[i].query for i in rows], "target": [data.records[i].target for i in rows],
                      "action": [options.action] * len(rows)}, "self_validation/flagged_rows.json")
    log.info("self-validation: %d of %d rows flagged (%s)", len(rows), len(data.records), options.action)
    return counts


def _seen_unseen(labels, scores, languages, seen: set[str], decide: np.ndarray, prefix: str) -> dict[str, float]:
    """F1 of the rows in languages seen in training and of the others (at 0.5 and at the decision thresholds):
    the split the competition's unseen languages are about."""
    in_seen = np.isin(languages, sorted(seen))
    values = {}
    for group, rows in (("seen", in_seen), ("unseen", ~in_seen)):
        if rows.any():
            values[f"{prefix}{group}_f1_at_0.5"] = metrics.scores_at(labels[rows], scores[rows], 0.5).f1
            values[f"{prefix}{group}_f1_at_oof_threshold"] = metrics.scores_at(labels[rows], scores[rows],
                                                                              decide[rows]).f1
            values[f"{prefix}{group}_all_positive_f1"] = metrics.all_positive_f1(labels[rows])
    return values


def _task_report(cfg, task: str, labels, oof, languages, folds, dev, dev_scores, plots_dir: Path, prefix: str
                 ) -> tuple[dict, float, dict[str, float], dict]:
    """One task's metrics and plots; its decision threshold (and per-language ones) tuned on out-of-fold scores,
    at which the per-language rows and dev are judged."""
    seen = set(languages)
    threshold, tuned = thresholds.tune(labels, oof, cfg.threshold, cfg.seed)
    by_language_thresholds = thresholds.by_language(labels, oof, languages, cfg.threshold, cfg.seed) \
        if cfg.threshold.per_language else {}
    decide = thresholds.row_thresholds(languages, threshold, by_language_thresholds)
    result = evaluate(labels, oof, languages, seen, decide)
    summary = _metric_dict(result, f"{prefix}oof_") | thresholds.as_metrics(tuned, prefix)
    fold_f1 = [metrics.scores_at(labels[folds == k], oof[folds == k], 0.5).f1 for k in range(cfg.split.n_folds)]
    summary[f"{prefix}oof_fold_mean_f1_at_0.5"] = float(np.mean(fold_f1))
    summary[f"{prefix}oof_fold_std_f1_at_0.5"] = float(np.std(fold_f1))
    summary[f"{prefix}decision_threshold"] = threshold
    summary[f"{prefix}oof_f1_at_decision_thresholds"] = result["at_threshold"].f1
    summary[f"{prefix}oof_positive_rate_at_decision"] = float(np.mean(oof >= decide))
    summary |= {f"{prefix}decision_threshold_{language}": value for language, value in by_language_thresholds.items()}
    title = f"{cfg.backbone.name} {task}"
    plots.threshold_plot(*metrics.threshold_curve(labels, oof), result["best"], result["floor"],
                         f"{title}: out-of-fold F1", plots_dir / f"{prefix}threshold_f1.png")
    plots.language_plot(result["languages"], f"{title}: out-of-fold F1 per language",
                        plots_dir / f"{prefix}language_f1.png")
    by_language = {f"{prefix}out-of-fold": result["languages"]}
    if dev_scores is not None:
        dev_labels = np.array([r.label for r in dev])
        dev_languages = [r.language for r in dev]
        rate = summary[f"{prefix}oof_positive_rate_at_decision"]
        matched = thresholds.matched_rate(dev_languages, dev_scores, seen, rate, cfg.threshold.min_language_rows)
        if matched:
            matched_rows = thresholds.row_thresholds(dev_languages, threshold, by_language_thresholds | matched)
            unseen_rows = ~np.isin(dev_languages, sorted(seen))
            summary[f"{prefix}dev_unseen_f1_at_matched_rate"] = metrics.scores_at(
                dev_labels[unseen_rows], dev_scores[unseen_rows], matched_rows[unseen_rows]).f1
        dev_own = by_language_thresholds | (matched if cfg.threshold.unseen == "matched_rate" else {})
        dev_thresholds = thresholds.row_thresholds(dev_languages, threshold, dev_own)
        dev_result = evaluate(dev_labels, dev_scores, dev_languages, seen, dev_thresholds)
        summary.update(_metric_dict(dev_result, f"{prefix}dev_"))
        summary[f"{prefix}dev_f1_at_oof_threshold"] = dev_result["at_threshold"].f1
        summary |= _seen_unseen(dev_labels, dev_scores, dev_languages, seen, dev_thresholds, f"{prefix}dev_")
        plots.language_plot(dev_result["languages"], f"{title}: dev F1 per language (fold ensemble)",
                            plots_dir / f"{prefix}dev_language_f1.png")
        by_language[f"{prefix}dev"] = dev_result["languages"]
    return summary, threshold, by_language_thresholds, by_language


def report(cfg, data: TrainingData, oof, dev, dev_scores, plots_dir: Path) -> tuple[dict, dict, dict, dict]:
    """Headline metrics, per-language rows and plots, per task; thresholds come from out-of-fold scores only
    (one per task) and dev is judged at them. For task=joint each key carries a qc_/qi_ prefix and the unprefixed
    headline is the competition score, the mean of the two tasks."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    tasks = np.array([r.task for r in data.records])
    dev_tasks = np.array([r.task for r in dev]) if dev else None
    dev_mean = np.mean(dev_scores, axis=0) if dev_scores else None
    joint = cfg.task.code == "JOINT"
    summary, decision, per_language, by_language = {}, {}, {}, {}
    for task in task_parts(cfg):
        rows = np.flatnonzero(tasks == task)
        dev_rows = np.flatnonzero(dev_tasks == task) if dev_mean is not None else None
        part, decision[task], per_language[task], languages = _task_report(
            cfg, task, data.labels[rows], oof[rows], [data.languages[i] for i in rows], data.folds[rows],
            [dev[i] for i in dev_rows] if dev_rows is not None else None,
            dev_mean[dev_rows] if dev_rows is not None else None, plots_dir, f"{task.lower()}_" if joint else "")
        summary.update(part)
        by_language.update(languages)
    if joint:
        for key in ("oof_best_f1", "oof_at_0.5_f1", "oof_all_positive_f1", "dev_at_0.5_f1", "dev_f1_at_oof_threshold"):
            if f"qc_{key}" in summary and f"qi_{key}" in summary:
                summary[key] = (summary[f"qc_{key}"] + summary[f"qi_{key}"]) / 2
    return summary, decision, per_language, by_language


def refit_report(cfg, data: TrainingData, summary: dict, refit_scores: list[np.ndarray], dev
                 ) -> tuple[dict, dict[str, float]]:
    """The refit model's threshold per task, and its dev metrics. `threshold.refit=folds` (default) keeps the fold
    models' out-of-fold threshold; `matched_rate` takes the score at which the refit calls as many of its (in-sample)
    training rows relevant as the folds did out of fold. Both are logged; on the taxonomy benchmark the folds'
    threshold carried over better (BENCHMARKS.md)."""
    tasks = np.array([r.task for r in data.records])
    joint = cfg.task.code == "JOINT"
    values, decision = {}, {}
    for task in task_parts(cfg):
        prefix = f"{task.lower()}_" if joint else ""
        rows = tasks == task
        rate = summary[f"{prefix}oof_positive_rate_at_decision"]
        matched_threshold = float(np.quantile(refit_scores[0][rows], 1.0 - rate, method="higher"))
        values[f"{prefix}refit_threshold_matched_rate"] = matched_threshold
        decision[task] = (matched_threshold if cfg.threshold.get("refit", "folds") == "matched_rate"
                          else summary[f"{prefix}decision_threshold"])
        values[f"{prefix}refit_threshold"] = decision[task]
        if dev and len(refit_scores) > 1:
            dev_rows = np.array([r.task == task for r in dev])
            labels = np.array([r.label for r in dev])[dev_rows]
            scores = refit_scores[1][dev_rows]
            languages = [r.language for r, keep in zip(dev, dev_rows) if keep]
            seen = set(np.asarray(data.languages)[rows].tolist())
            in_seen = np.isin(languages, sorted(seen))
            matched = thresholds.matched_rate(languages, scores, seen, rate, cfg.threshold.min_language_rows)
            if matched:
                row_thresholds = thresholds.row_thresholds(languages, decision[task], matched)
                values[f"{prefix}dev_refit_unseen_f1_at_matched_rate"] = metrics.scores_at(
                    labels[~in_seen], scores[~in_seen], row_thresholds[~in_seen]).f1
            for name, threshold in (("refit_threshold", decision[task]), ("matched_threshold", matched_threshold),
                                    ("oof_threshold", summary[f"{prefix}decision_threshold"]), ("0.5", 0.5)):
                values[f"{prefix}dev_refit_f1_at_{name}"] = metrics.scores_at(labels, scores, threshold).f1
                for group, group_rows in (("seen", in_seen), ("unseen", ~in_seen)):
                    if group_rows.any():
                        values[f"{prefix}dev_refit_{group}_f1_at_{name}"] = metrics.scores_at(
                            labels[group_rows], scores[group_rows], threshold).f1
    return values, decision


def _run_name(cfg, trial_number: int | None) -> str:
    return cfg.tracking.run_name if trial_number is None else f"trial-{trial_number}-{cfg.tracking.run_name}"


def run(cfg: DictConfig) -> dict:
    """Train K folds (after TAPT and self-validation when chosen), log everything to MLflow, and return the
    headline metrics and the run and model ids."""
    check_config(cfg)
    trial = sweep_trial.connect(cfg)
    runtime = resolve_runtime(cfg.strategy.name, cfg.train.precision, cfg.backbone.dtype, cfg.strategy.devices,
                              cfg.strategy.num_nodes)
    encoder = cfg.backbone.kind == "encoder"
    templates = {task: prompt_template(part, cfg.head, cfg.backbone) for task, part in task_parts(cfg).items()}
    translations = make_translations(cfg)
    data, clean_report, dev, extra_counts = prepare_data(cfg, translations, templates, encoder)
    dev_inputs = format_by_task(dev, templates, encoder) if dev else None
    location = resolve_source(cfg.backbone, cfg.paths.cache)
    tokenizer = load_tokenizer(cfg.backbone, location)
    build_head(cfg.head, tokenizer)  # answer words that tokenise badly fail here, before any training
    prompt_tokens = max(fixed_prompt_tokens(tokenizer, template, encoder) for template in templates.values())
    model = Model(location, tokenizer, cfg.train.max_length + prompt_tokens)

    tracking_uri = cfg.tracking.uri or tracking.default_tracking_uri(cfg.paths.root)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if global_rank() == 0:
            tracking.setup(tracking_uri, cfg.tracking.experiment,
                           cfg.tracking.artifact_root or Path(cfg.paths.root) / "mlruns" / "artifacts")
        else:  # the other ranks train and score beside rank 0; what they would log goes to a throwaway store
            tracking.setup(f"sqlite:///{scratch / 'rank_store.db'}", cfg.tracking.experiment,
                           scratch / "rank_artifacts")
        tags = {"relevance.level": "parent"}
        if trial.number is not None:
            tags |= {"relevance.study": cfg.sweep.study, "relevance.trial": str(trial.number)}
        with mlflow.start_run(run_name=_run_name(cfg, trial.number), tags=tags,
                              parent_run_id=cfg.sweep.parent_run) as parent:
            trial.started(parent.info.run_id)
            mlflow.log_params(tracking.flatten(cfg))
            mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            mlflow.log_metrics({"rows_train": len(data.records),
                                "rows_dropped_empty_query": clean_report.dropped_empty_query, **extra_counts})
            if cfg.tapt.name != "none":
                model.init_adapter = tapt_stage(cfg, runtime, model, encoder, translations, scratch, tracking_uri)
            if cfg.get("augmentation") and cfg.augmentation.get("self_validation"):
                mlflow.log_metrics(self_validation_stage(cfg, runtime, model, data, parent.info.run_id))
            adapters = scratch / "bundle" / "adapters"
            oof, dev_scores = cross_validate(cfg, runtime, model, data, dev_inputs, adapters, parent.info.run_id,
                                             trial=trial)
            refit_scores = None
            if cfg.train.refit:
                inputs, labels = data.training_rows(None)
                with mlflow.start_run(run_name="refit", nested=True, tags={"relevance.level": "fold",
                                                                           "relevance.stage": "refit"}):
                    log.info("refit: training on all %d rows", len(inputs))
                    refit_scores, _ = train_fold(cfg, runtime, location, tokenizer, model.max_length, inputs, labels,
                                                 [data.inputs] + ([dev_inputs] if dev_inputs else []),
                                                 cfg.split.n_folds, adapters / "refit", model.init_adapter,
                                                 name="refit")
            mlflow.log_metrics({"translations_computed": translations.computed,
                                "translations_reused": translations.reused})
            summary, decision, per_language, by_language = report(cfg, data, oof, dev, dev_scores, scratch / "plots")
            refit_decision = {}
            if refit_scores is not None:
                refit_summary, refit_decision = refit_report(cfg, data, summary, refit_scores, dev)
                summary |= refit_summary
            mlflow.log_metrics(summary)
            mlflow.log_table(pd.DataFrame([dict(row, scored=name) for name, rows in by_language.items()
                                           for row in rows]), "language_f1.json")
            mlflow.log_artifacts(str(scratch / "plots"), "plots")
            mlflow.log_table({"id": [r.id for r in data.records], "task": [r.task for r in data.records],
                              "language": data.languages,
                              "fold": data.folds.tolist(), "label": data.labels.tolist(), "score": oof.tolist()},
                             "oof_scores.json")
            model_uri = None
            if cfg.tracking.log_model and global_rank() == 0:  # only rank 0 saved the adapters
                augmentation = OmegaConf.to_container(cfg.augmentation, resolve=True) if cfg.get("augmentation") else {}
                meta = {"task": cfg.task.code, "templates": templates, "encoder": encoder,
                        "head": OmegaConf.to_container(cfg.head, resolve=True), "augmentation": augmentation,
                        "translator": OmegaConf.to_container(translations.cfg, resolve=True),
                        "thresholds": decision, "language_thresholds": per_language, "max_length": model.max_length,
                        "unseen_threshold": cfg.threshold.unseen,
                        "min_language_rows": cfg.threshold.min_language_rows,
                        "positive_rates": {task: summary[f"{task.lower() + '_' if len(decision) > 1 else ''}"
                                                         f"oof_positive_rate_at_decision"] for task in decision},
                        "seen_languages": sorted(set(data.languages)),
                        "lowercase": cfg.clean.lowercase, "eval_batch_size": cfg.train.eval_batch_size,
                        "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
                        "folds": [f"fold_{k}" for k in range(cfg.split.n_folds)],
                        "refit": "refit" if cfg.train.refit else None, "refit_thresholds": refit_decision,
                        "run_id": parent.info.run_id}
                model_uri = log_model(write_bundle(scratch / "bundle", meta), cfg.task.code)
                mlflow.set_tag("relevance.model_uri", model_uri)
            if cfg.register.name and model_uri:
                version = tracking.register(model_uri, cfg.register.name, cfg.register.alias)
                mlflow.set_tag("relevance.registered", f"{cfg.register.name}/{version}")
            return {**summary, "languages": by_language, "run_id": parent.info.run_id, "model_uri": model_uri,
                    "tracking_uri": mlflow.get_tracking_uri(), "translations_computed": translations.computed,
                    "translations_reused": translations.reused, **extra_counts}
