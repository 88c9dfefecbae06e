"""`relevance export`: a logged model as plain Hugging Face checkpoints that any tool loads (transformers, vLLM,
TEI, sentence-transformers), one folder per fold and one for the refit, each with its adapter folded into the
base weights and its head included, plus `relevance_export.json` (how a row becomes the model's input, how the
output becomes the score, the thresholds) and the model card.

How each head's export scores a row (the input is the bundle's own preprocessing, see `relevance_export.json`):
- classifier on a decoder: `AutoModelForSequenceClassification`, sigmoid of its one logit;
- yes_no: `AutoModelForCausalLM`, sigmoid of logit(yes) - logit(no) at the last token (vLLM's
  `classifier_from_token` form);
- classifier on an encoder: `AutoModel`, mean pooling over real tokens, then `score.safetensors`'s linear layer;
- bi_encoder: `AutoModel` (also a sentence-transformers folder: mean pooling, normalised), sigmoid of
  scale * cosine(query, target) + bias from `relevance_export.json` (prefixes "query: " / "passage: ")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from relevance.errors import RelevanceError
from relevance.serving.bundle import ADAPTERS, ModelBundle

EXPORT_FILE = "relevance_export.json"


def export(bundle_folder: Path, output: Path, cache: Path) -> list[Path]:
    """Write every fold's and the refit's merged checkpoint under `output`; returns their folders."""
    from relevance.model import finetune
    from relevance.model.backbones import load_tokenizer
    from relevance.model.heads import build_head
    from relevance.weights import resolve_source

    bundle = ModelBundle.load(bundle_folder)
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise RelevanceError(f"{output} is not empty; give a new folder to export into.")
    backbone, head_cfg = OmegaConf.create(bundle.backbone), OmegaConf.create(bundle.head)
    if backbone.get("quantization") == "4bit":
        raise RelevanceError(
            "a 4-bit (QLoRA) model cannot be merged into its quantized base; export needs a 16-bit base."
        )
    location = resolve_source(backbone, cache)
    tokenizer = load_tokenizer(backbone, location)
    head = build_head(head_cfg, tokenizer)
    written = []
    for name in bundle.weight_folders():
        model = head.load(backbone, location, tokenizer, torch.float32, head_cfg)
        if finetune.method(backbone) == "full":
            finetune.load_trainable(model, bundle_folder / ADAPTERS / name)
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, bundle_folder / ADAPTERS / name).merge_and_unload()
        folder = output / name
        score = _save(model.eval(), head, folder)
        tokenizer.save_pretrained(folder)
        thresholds = bundle.decision_thresholds("refit" if name == bundle.refit else "folds")
        (folder / EXPORT_FILE).write_text(json.dumps(_description(bundle, name, score, thresholds), indent=2))
        card = bundle_folder / "README.md"
        if card.is_file():
            shutil.copy(card, folder / "MODEL_CARD.md")
        written.append(folder)
    return written


def _save(model, head, folder: Path) -> dict:
    """The merged model in its plain form, and how its output becomes the score."""
    if head.name == "yes_no":
        model.save_pretrained(folder)
        return {"kind": "yes_no", "yes_token_id": head.yes_id, "no_token_id": head.no_id}
    if not hasattr(model, "encoder"):  # a decoder's sequence-classification model, head included
        model.save_pretrained(folder)
        return {"kind": "classifier"}
    model.encoder.save_pretrained(folder)
    module = getattr(model, model.head_module)
    if head.name == "bi_encoder":
        _sentence_transformers_files(folder, model.config.hidden_size)
        return {"kind": "bi_encoder", "scale": float(module.scale), "bias": float(module.bias)}
    from safetensors.torch import save_file

    weights = {"weight": module.weight.detach().contiguous(), "bias": module.bias.detach()}
    save_file(weights, str(folder / "score.safetensors"))
    return {"kind": "mean_pooled_classifier", "score_file": "score.safetensors"}


def _sentence_transformers_files(folder: Path, hidden_size: int) -> None:
    """What sentence-transformers (and TEI) read to embed with mean pooling and normalisation."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": hidden_size, "pooling_mode_mean_tokens": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (folder / "2_Normalize").mkdir()


def _description(bundle: ModelBundle, name: str, score: dict, thresholds: dict) -> dict:
    return {
        "model": name,
        "task": bundle.task,
        "input": {
            "templates": bundle.preprocessor["templates"],
            "encoder_pair": bundle.preprocessor["encoder"],
            "lowercase": bundle.preprocessor["lowercase"],
            "category_order": bundle.preprocessor["category_order"],
            "max_length": bundle.max_length,
            "query_prefix": bundle.head.get("query_prefix"),
            "target_prefix": bundle.head.get("target_prefix"),
            "note": "rows are cleaned and formatted as relevance.text.preprocess.Preprocessor does; the score of "
            "a bi_encoder with catalogue_margin also needs the catalogue below",
        },
        "score": score,
        "thresholds": thresholds,
        "language_thresholds": bundle.language_thresholds if name != bundle.refit else {},
        "catalogue": bundle.catalogue,
        "run_id": bundle.run_id,
    }
