"""The model card: what a logged model is, in one page a person reads in the MLflow UI (the bundle's README, the run's
`model_card.md`, the registered version's description): data, languages seen and unseen, metrics beside their
all-positive floors, thresholds, backbone and recipe, and the command that trains it again.

It opens with the Hugging Face Hub's YAML metadata (base model, languages, tags, and the metrics as a `model-index`),
so the exported or uploaded model is listed with them on the Hub; the registry gets the same facts as the
registered version's tags (`split_front_matter`)."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

METRICS = (  # (what the card calls it, summary key, its floor's key)
    ("out-of-fold F1, best threshold", "oof_best_f1", "oof_all_positive_f1"),
    ("out-of-fold F1 at 0.5", "oof_at_0.5_f1", "oof_all_positive_f1"),
    ("dev F1 at the model's decisions", "dev_f1_at_decision", "dev_all_positive_f1"),
    ("dev F1, languages seen in training", "dev_seen_f1_at_oof_threshold", "dev_seen_all_positive_f1"),
    ("dev F1, unseen languages", "dev_unseen_f1_at_oof_threshold", "dev_unseen_all_positive_f1"),
    ("dev F1, unseen languages, own quantiles", "dev_unseen_f1_at_matched_rate", "dev_unseen_all_positive_f1"),
)


@dataclass(frozen=True)
class CardFacts:
    """What a model card says of the run's config (relevance.build makes it): task, data, folds, backbone, head,
    thresholds, training and the command that trains it again."""

    task_code: str
    task_name: str
    target_name: str  # how prompts name the target: category path, title
    data: str
    n_folds: int
    split: str
    backbone: dict  # the backbone group as trained (name, hub_id, finetune, lora_targets)
    head: str
    threshold_method: str
    threshold_unseen: str
    refit: bool
    lora_r: int
    lora_alpha: int
    epochs: int
    lr: float
    batch_size: int
    max_length: int
    augmentation: tuple[str, ...]
    tapt: str
    seed: int
    command: str  # `python train.py <overrides>`


def command() -> str:
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


def _targets(backbone: dict) -> str:
    targets = backbone.get("lora_targets")
    return ", ".join(targets) if isinstance(targets, list) else str(targets)


def metadata(card: CardFacts, summary: dict, languages: list[str]) -> dict:
    """The Hub's model card metadata: base model, languages, tags, and the metrics as a model-index."""
    backbone = card.backbone
    facts = {
        "library_name": "peft" if backbone.get("finetune", "lora") == "lora" else "transformers",
        "pipeline_tag": "text-classification",
        "language": languages,
        "tags": ["relevance", "e-commerce-search", card.task_code.lower(), f"head-{card.head}", "mlflow"],
    }
    if backbone.get("hub_id"):
        facts["base_model"] = str(backbone["hub_id"])
    results = [
        {"type": "f1", "name": name, "value": round(float(summary[key]), 4)}
        for name, key, _ in METRICS
        if key in summary
    ]
    facts["model-index"] = [
        {
            "name": f"relevance-{card.task_name}-{backbone['name']}",
            "results": [
                {
                    "task": {"type": "text-classification", "name": f"{card.task_code} relevance"},
                    "dataset": {"type": card.data, "name": card.data},
                    "metrics": results,
                }
            ],
        }
    ]
    return facts


def split_front_matter(card: str) -> tuple[dict, str]:
    """A card's YAML metadata and its body (the card as it was before the metadata opened it, if none)."""
    if not card.startswith("---\n"):
        return {}, card
    head, _, body = card[4:].partition("\n---\n")
    return (yaml.safe_load(head) or {}), body.lstrip("\n")


def model_card(
    card: CardFacts, summary: dict, seen_languages: list[str], dev_languages: list[str], rows: int, model_uri: str
) -> str:
    """The card of a run's model, from its config's facts and the summary the console prints; `model_uri` is where
    the model will be (`runs:/<run id>/<model name>`: known before it is logged, so the bundle's copy can say it)."""
    backbone, unseen = card.backbone, sorted(set(dev_languages) - set(seen_languages))
    metrics = "".join(_row(name, summary, key, floor) for name, key, floor in METRICS)
    augmentation = ", ".join(card.augmentation) or "none"
    rows_line = f"{rows} training rows, {card.n_folds} folds (`split={card.split}`)"
    model = f"`{backbone['name']}` ({backbone.get('hub_id') or 'built in'}), `head={card.head}`"
    thresholds = ", ".join(
        f"{k.removesuffix('decision_threshold').rstrip('_').upper() or card.task_code} {v:.3f}"
        for k, v in summary.items()
        if k.endswith("decision_threshold")
    )
    front = yaml.safe_dump(metadata(card, summary, sorted(set(seen_languages) | set(unseen))), sort_keys=False)
    return f"""---
{front}---

# {card.task_code} relevance model: {backbone["name"]}

Does a search query match a product's {card.target_name}? Trained by the relevance harness.

## Data
- data: `{card.data}`, {rows_line}
- languages seen in training: {", ".join(seen_languages)}
- languages scored on dev but never trained on: {", ".join(unseen) or "none"}

## Metrics (F1 of the relevant class, beside the all-positive floor)
| metric | value | floor |
|---|---|---|
{metrics}
## Decision
- threshold: {thresholds} (`threshold.method={card.threshold_method}`, tuned on out-of-fold scores; unseen languages:
  `{card.threshold_unseen}`)
- scored by: {"the model refit on every row" if card.refit else f"the mean of the {card.n_folds} fold models"}

## Model
- backbone: {model}, fine-tuning: {backbone.get("finetune", "lora")}
  (LoRA r={card.lora_r}, alpha={card.lora_alpha} on {_targets(backbone)})
- training: {card.epochs} epochs, lr {card.lr:g}, batch {card.batch_size}, max length {card.max_length},
  augmentation: {augmentation}, TAPT: {card.tapt}, seed {card.seed}

## Reproduce
```
{card.command}
```

## Use
```
python predict.py model={model_uri} data=competition data.dir=<folder> file=test
mlflow models serve -m {model_uri} -h 127.0.0.1 -p 5001
```
"""
