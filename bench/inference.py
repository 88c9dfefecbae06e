"""Inference speed: the harness's scorer against plain Hugging Face loops on the same model and the same inputs.

    python bench/inference.py                  # Gemma-3-270M, 600 taxonomy pairs (short and long), batch 32
    python bench/inference.py --rows 200 --backbone tiny

One LoRA adapter (random, non-zero, so that merging it changes the weights) and a fresh score head are saved as a
one-fold bundle; every method then scores the same prompts in its own process (so its peak memory is its own):

- plain HF, one pair at a time: tokenise one prompt, forward, sigmoid (what a first script does);
- plain HF, fixed-length batches: `padding="max_length"` batches in file order (what the teams' scripts did);
- the harness (`RelevanceScorer`): length-sorted batches with dynamic padding, `inference_mode`, the LoRA product
  merged into the weights, the attention kernel chosen by `backbone.attention`; and the same with the merge
  and SDPA turned off, to show what each contributes.

Every method first scores a few rows untimed (first-call set-up). Scores must agree with the one-at-a-time loop
within 1e-4, or the table says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, need_taxonomy, peak_rss_mb, run_worker, table, write_section  # noqa: E402

METHODS = {
    "plain HF, one pair at a time": "hf_one",
    "plain HF, fixed-length padded batches": "hf_padded",
    "harness, before: LoRA unmerged, eager attention": "harness_unmerged_eager",
    "harness, LoRA unmerged (SDPA)": "harness_unmerged",
    "harness (merged LoRA, SDPA, length-sorted dynamic padding)": "harness",
}
WARM_UP = 8  # rows every method scores once, untimed, before the clock starts (first-call set-up)


def compose(backbone: str, cache: Path, *overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return hydra_compose(
            "train",
            overrides=[
                f"backbone={backbone}",
                f"paths.cache={cache}",
                "paths.root=.",
                "tracking.uri=sqlite:///unused.db",
                *overrides,
            ],
        )


def build_bundle(backbone: str, cache: Path, folder: Path) -> Path:
    """A one-fold bundle in the harness's format: the base referenced, a random LoRA adapter and score head."""
    import torch
    from omegaconf import OmegaConf

    from relevance.model.backbones import load_tokenizer
    from relevance.model.heads import load_model, prompt_template
    from relevance.model.module import apply_lora
    from relevance.serving.bundle import ModelBundle
    from relevance.text.formatting import fixed_prompt_tokens
    from relevance.text.preprocess import Preprocessor
    from relevance.weights import resolve_source

    cfg = compose(backbone, cache)
    location = resolve_source(cfg.backbone, cache)
    tokenizer = load_tokenizer(cfg.backbone, location)
    torch.manual_seed(0)
    model = apply_lora(
        load_model(cfg.backbone, location, tokenizer, torch.float32),
        cfg.backbone.lora_targets,
        cfg.backbone.head_module,
        cfg.lora.r,
        cfg.lora.alpha,
        0.0,
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    model.save_pretrained(folder / "adapters" / "fold_0")
    (folder / "location.json").write_text(json.dumps(location))  # for the plain loops, which load the base alone
    template = prompt_template(cfg.task, cfg.head, cfg.backbone)
    bundle = ModelBundle(
        task="QC",
        backbone=OmegaConf.to_container(cfg.backbone, resolve=True),
        head=OmegaConf.to_container(cfg.head, resolve=True),
        preprocessor=Preprocessor({"QC": template}, encoder=False, lowercase=True, augmentation=None).to_dict(),
        max_length=cfg.train.max_length + fixed_prompt_tokens(tokenizer, template, False),
        eval_batch_size=cfg.train.eval_batch_size,
        folds=["fold_0"],
        thresholds={"QC": 0.5},
    )
    return bundle.save(folder)


def bundle_variant(bundle: Path, folder: Path, attention: str) -> Path:
    """The same bundle with another `backbone.attention`."""
    shutil.copytree(bundle, folder)
    meta = json.loads((folder / "relevance.json").read_text())
    meta["backbone"]["attention"] = attention
    (folder / "relevance.json").write_text(json.dumps(meta))
    return folder


def pairs(n_rows: int, seed: int = 0) -> list[dict]:
    """Taxonomy QC pairs: short localized queries against English paths of two to seven levels."""
    from relevance.data.reader import read_records
    from relevance.synthetic.taxonomy import TaxonomySpec, generate_taxonomy

    with tempfile.TemporaryDirectory() as scratch:
        folder = generate_taxonomy(need_taxonomy(), Path(scratch) / "t", TaxonomySpec())
        records = read_records(folder / "train_QC.txt", "QC") + read_records(folder / "dev_QC.txt", "QC")
    chosen = np.random.default_rng(seed).choice(len(records), n_rows, replace=False)
    return [
        {
            "language": records[i].language,
            "query": records[i].query,
            "target": records[i].target,
            "label": records[i].label,
        }
        for i in chosen
    ]


def _prompts(templates: dict, records) -> list[str]:
    """Exactly the text the harness feeds the model: its preprocessing (cleaning, then its template)."""
    from relevance.text.preprocess import Preprocessor

    return Preprocessor(templates, encoder=False, lowercase=True, augmentation=None).inputs(records)


def worker(method: str, bundle: Path, rows_file: Path, batch: int, cache: Path) -> dict:
    import torch

    from relevance.data.records import Record
    from relevance.serving.scorer import RelevanceScorer

    rows = json.loads(rows_file.read_text())
    records = [Record(id=i, task="QC", **row) for i, row in enumerate(rows)]
    if method.startswith("harness"):
        scorer = RelevanceScorer(bundle, cache=cache, merge="unmerged" not in method)
        attention = scorer.model.config._attn_implementation
        scorer.predict_records(records[:WARM_UP], batch_size=batch)
        started = time.perf_counter()
        scores = scorer.predict_records(records, batch_size=batch)
        seconds = time.perf_counter() - started
    else:
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        meta = json.loads((bundle / "relevance.json").read_text())
        prompts, max_length = _prompts(meta["preprocessor"]["templates"], records), meta["max_length"]
        location = json.loads((bundle / "location.json").read_text())
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tokenizer.pad_token_id
        model = PeftModel.from_pretrained(model, bundle / "adapters" / "fold_0").eval()
        attention = model.config._attn_implementation
        with torch.no_grad():
            model(**tokenizer(prompts[:WARM_UP], padding=True, return_tensors="pt"))
        scores = []
        started = time.perf_counter()
        with torch.no_grad():
            if method == "hf_one":
                for prompt in prompts:
                    encoded = tokenizer(prompt, truncation=True, max_length=max_length, return_tensors="pt")
                    scores.append(torch.sigmoid(model(**encoded).logits[0, 0]).item())
            else:
                for start in range(0, len(prompts), batch):
                    encoded = tokenizer(
                        prompts[start : start + batch],
                        truncation=True,
                        max_length=max_length,
                        padding="max_length",
                        return_tensors="pt",
                    )
                    scores += torch.sigmoid(model(**encoded).logits[:, 0]).tolist()
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "scores": np.asarray(scores, dtype=float).tolist(),
        "peak_mb": peak_rss_mb(),
        "attention": attention,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--backbone", default="gemma3_270m")
    parser.add_argument("--cache", type=Path, default=None, help="converted backbones (default: RELEVANCE_CACHE)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from relevance.serving.scorer import default_cache

    cache = args.cache or default_cache()
    if args.worker:
        print(json.dumps(worker(args.worker, args.bundle, args.rows_file, args.batch, cache)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        bundle = build_bundle(args.backbone, cache, scratch / "bundle")
        eager = bundle_variant(bundle, scratch / "bundle_eager", "eager")
        rows_file = scratch / "rows.json"
        rows = pairs(args.rows)
        rows_file.write_text(json.dumps(rows))
        results = {}
        for label, method in METHODS.items():
            command = [
                sys.executable,
                __file__,
                "--worker",
                method,
                "--bundle",
                str(eager if method.endswith("eager") else bundle),
                "--rows-file",
                str(rows_file),
                "--batch",
                str(args.batch),
                "--cache",
                str(cache),
            ]
            results[label] = run_worker(label, command)
            print(f"{label}: {args.rows / results[label]['seconds']:.1f} pairs/s", flush=True)
    reference = np.array(results["plain HF, one pair at a time"]["scores"])
    one_rate = args.rows / results["plain HF, one pair at a time"]["seconds"]
    padded_rate = args.rows / results["plain HF, fixed-length padded batches"]["seconds"]
    body = []
    for label, result in results.items():
        rate = args.rows / result["seconds"]
        difference = float(np.max(np.abs(np.array(result["scores"]) - reference)))
        body.append(
            [
                label,
                result["attention"],
                f"{rate:.1f}",
                f"{rate / one_rate:.2f}x",
                f"{rate / padded_rate:.2f}x",
                f"{result['peak_mb']:.0f}",
                f"{difference:.1e}" + ("" if difference <= 1e-4 else " (differs!)"),
            ]
        )
    lengths = [len(r["query"]) + len(r["target"]) for r in rows]
    text = table(
        [
            "method",
            "attention",
            "pairs/s",
            "vs one at a time",
            "vs fixed padding",
            "peak RSS MB",
            "max abs score diff vs one at a time",
        ],
        body,
    )
    text += (
        f"\n\n{args.rows} taxonomy QC pairs (query + path: {min(lengths)} to {max(lengths)} characters, median "
        f"{int(np.median(lengths))}), backbone {args.backbone}, batch {args.batch}, fp32 on CPU."
    )
    print()
    print(text)
    if not args.no_write:
        write_section(
            f"inference-{args.backbone}", f"Inference: harness against plain Hugging Face ({args.backbone})", text
        )


if __name__ == "__main__":
    main()
