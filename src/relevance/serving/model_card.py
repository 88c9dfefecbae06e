"""The model card: what a logged model is, in one page a person reads in the MLflow UI (the bundle's README, the run's
`model_card.md`, the registered version's description): data, languages seen and unseen, metrics beside their
all-positive floors, thresholds, backbone and recipe, and the command that trains it again."""

from __future__ import annotations

from omegaconf import OmegaConf


def _command(cfg) -> str:
    """`python train.py <the overrides of this run>`, as Hydra received them (none when composed in code)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # not started by Hydra's main (a test, a notebook)
        overrides = []
    return " ".join(["python train.py", *overrides])


def _row(name: str, summary: dict, key: str, floor: str | None) -> str:
    if key not in summary:
        return ""
    value = f"{summary[key]:.4f}"
    return f"| {name} | {value} | {summary[floor]:.4f} |\n" if floor in summary else f"| {name} | {value} | |\n"


def _targets(backbone) -> str:
    targets = backbone.get("lora_targets")
    return ", ".join(OmegaConf.to_container(targets)) if OmegaConf.is_config(targets) else str(targets)


def model_card(cfg, summary: dict, seen_languages: list[str], dev_languages: list[str]) -> str:
    """The card of a run's model, from its config and the summary the console prints."""
    backbone, unseen = cfg.backbone, sorted(set(dev_languages) - set(seen_languages))
    metrics = "".join(
        _row(name, summary, key, floor)
        for name, key, floor in (
            ("out-of-fold F1, best threshold", "oof_best_f1", "oof_all_positive_f1"),
            ("out-of-fold F1 at 0.5", "oof_at_0.5_f1", "oof_all_positive_f1"),
            ("dev F1 at the model's decisions", "dev_f1_at_decision", "dev_all_positive_f1"),
            ("dev F1, languages seen in training", "dev_seen_f1_at_oof_threshold", "dev_seen_all_positive_f1"),
            ("dev F1, unseen languages", "dev_unseen_f1_at_oof_threshold", "dev_unseen_all_positive_f1"),
            ("dev F1, unseen languages, own quantiles", "dev_unseen_f1_at_matched_rate", "dev_unseen_all_positive_f1"),
        )
    )
    augmentation = ", ".join(cfg.get("augmentation") or {}) or "none"
    rows = f"{summary.get('rows_train', '?')} training rows, {cfg.split.n_folds} folds (`split={cfg.split.name}`)"
    model = f"`{backbone.name}` ({backbone.get('hub_id') or 'built in'}), `head={cfg.head.name}`"
    train = cfg.train
    thresholds = ", ".join(
        f"{k.removesuffix('decision_threshold').rstrip('_').upper() or cfg.task.code} {v:.3f}"
        for k, v in summary.items()
        if k.endswith("decision_threshold")
    )
    return f"""# {cfg.task.code} relevance model: {backbone.name}

Does a search query match a product's {cfg.task.target_name}? Trained by the relevance harness.

## Data
- data: `{cfg.data.name}`, {rows}
- languages seen in training: {", ".join(seen_languages)}
- languages scored on dev but never trained on: {", ".join(unseen) or "none"}

## Metrics (F1 of the relevant class, beside the all-positive floor)
| metric | value | floor |
|---|---|---|
{metrics}
## Decision
- threshold: {thresholds} (`threshold.method={cfg.threshold.method}`, tuned on out-of-fold scores; unseen languages:
  `{cfg.threshold.unseen}`)
- scored by: {"the model refit on every row" if cfg.train.refit else f"the mean of the {cfg.split.n_folds} fold models"}

## Model
- backbone: {model}, fine-tuning: {backbone.get("finetune", "lora")}
  (LoRA r={cfg.lora.r}, alpha={cfg.lora.alpha} on {_targets(backbone)})
- training: {train.epochs} epochs, lr {train.lr:g}, batch {train.batch_size}, max length {train.max_length},
  augmentation: {augmentation}, TAPT: {cfg.tapt.name}, seed {cfg.seed}

## Reproduce
```
{_command(cfg)}
```

## Use
```
python predict.py model=<this model's URI> data=competition data.dir=<folder> file=test
mlflow models serve -m <this model's URI> -h 127.0.0.1 -p 5001
```
"""
