"""Training speed: the harness's Lightning training step against a plain Hugging Face `Trainer` + PEFT script with
the same model, rows, batch size, length limit, LoRA settings, optimizer and gradient clipping.

    python bench/training.py                   # Gemma-3-270M, 480 taxonomy rows (30 steps of 16)
    python bench/training.py --backbone tiny --rows 160

Each method trains one epoch in its own process; samples per second are counted between the end of the warm-up
steps and the end of the last step, so data loading and padding are inside the clock, model loading is not.

- plain HF Trainer, dynamic padding: `DataCollatorWithPadding`, rows in random order (the common script);
- plain HF Trainer, `train_sampling_strategy="group_by_length"`: Transformers' own length grouping;
- plain HF Trainer, fixed-length padding: every row padded to the length limit (as the teams' scripts did);
- the harness: `RelevanceModule` under the same Lightning Trainer `train.py` builds, length-grouped batches with
  dynamic padding; then the same with `head=yes_no` (its instruction prompt, scored at the answer token) under
  each of its two losses: `pair` (BCE on logit(yes) - logit(no), two rows of the LM head) and `vocab`
  (cross-entropy over the whole vocabulary, the teams' SFT).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, run_worker, table, write_section  # noqa: E402
from inference import _prompts, compose, pairs  # noqa: E402

METHODS = {
    "plain HF Trainer + PEFT, dynamic padding, random order": "hf_dynamic",
    "plain HF Trainer + PEFT, group_by_length sampler": "hf_grouped",
    "plain HF Trainer + PEFT, fixed-length padding": "hf_fixed",
    "harness (Lightning, length-grouped batches, dynamic padding)": "harness",
    "harness, head=yes_no (pair loss: the yes and no rows of the LM head)": "harness_yes_no_pair",
    "harness, head=yes_no head.loss=vocab (cross-entropy over the whole vocabulary)": "harness_yes_no_vocab",
}
HEAD_OVERRIDES = {  # the harness rows' heads; the plain Trainer rows are classifiers
    "harness_yes_no_pair": ["head=yes_no", "head.loss=pair"],
    "harness_yes_no_vocab": ["head=yes_no", "head.loss=vocab"],
}
WARM_UP_STEPS = 3


def _rate(step_ends: list[float], batch_size: int) -> float:
    timed = step_ends[WARM_UP_STEPS - 1 :]
    return (len(timed) - 1) * batch_size / (timed[-1] - timed[0])


def worker(method: str, backbone: str, cache: Path, rows_file: Path) -> dict:
    import torch

    from relevance.model.backbones import load_tokenizer
    from relevance.model.heads import prompt_template
    from relevance.text.formatting import fixed_prompt_tokens
    from relevance.weights import resolve_source

    cfg = compose(backbone, cache, *HEAD_OVERRIDES.get(method, []))
    rows = json.loads(rows_file.read_text())
    template = prompt_template(cfg.task, cfg.head, cfg.backbone)
    from relevance.data.records import Record

    records = [
        Record(id=i, task="QC", language=r["language"], query=r["query"], target=r["target"], label=r["label"])
        for i, r in enumerate(rows)
    ]
    prompts = _prompts({"QC": template}, records)
    labels = np.array([r["label"] for r in rows])
    location = resolve_source(cfg.backbone, cache)
    tokenizer = load_tokenizer(cfg.backbone, location)
    max_length = cfg.train.max_length + fixed_prompt_tokens(tokenizer, template, False)
    torch.manual_seed(0)
    step_ends: list[float] = []
    if method.startswith("harness"):
        from dataclasses import replace

        import lightning as L

        from relevance import build
        from relevance.model.datamodule import PairDataModule
        from relevance.model.module import RelevanceModule
        from relevance.runtime import resolve_runtime
        from relevance.training.fold import ModelSource, fresh_model, make_trainer

        class StepClock(L.Callback):
            def on_train_batch_end(self, *args, **kwargs):
                step_ends.append(time.perf_counter())

        runtime = resolve_runtime(cfg.strategy, cfg.train.precision, cfg.backbone.dtype, 1, 1)
        cfg.progress = False
        settings = replace(build.fold_settings(cfg), epochs=1)
        model, head = fresh_model(settings, ModelSource(location, tokenizer, max_length), runtime.load_dtype)
        module = RelevanceModule(
            model,
            head,
            cfg.train.lr,
            cfg.train.weight_decay,
            cfg.train.warmup_ratio,
            cfg.train.scheduler,
        )
        trainer = make_trainer(settings, runtime)
        trainer.callbacks.append(StepClock())
        trainer.fit(
            module,
            datamodule=PairDataModule(
                tokenizer, prompts, labels, None, cfg.train.batch_size, cfg.train.eval_batch_size, max_length, cfg.seed
            ),
        )
    else:
        from peft import LoraConfig, TaskType, get_peft_model
        from transformers import (
            AutoModelForSequenceClassification,
            DataCollatorWithPadding,
            Trainer,
            TrainerCallback,
            TrainingArguments,
        )

        class StepClock(TrainerCallback):
            def on_step_end(self, *args, **kwargs):
                step_ends.append(time.perf_counter())

        model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tokenizer.pad_token_id
        model = get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout,
                target_modules="all-linear",
                modules_to_save=[cfg.backbone.head_module],
            ),
        )
        padding = "max_length" if method == "hf_fixed" else False
        encoded = tokenizer(prompts, truncation=True, max_length=max_length, padding=padding)
        dataset = [
            {
                "input_ids": encoded["input_ids"][i],
                "attention_mask": encoded["attention_mask"][i],
                "labels": float(labels[i]),
            }
            for i in range(len(prompts))
        ]
        with tempfile.TemporaryDirectory() as output:
            arguments = TrainingArguments(
                output_dir=output,
                per_device_train_batch_size=cfg.train.batch_size,
                num_train_epochs=1,
                learning_rate=cfg.train.lr,
                weight_decay=cfg.train.weight_decay,
                warmup_steps=int(cfg.train.warmup_ratio * -(-len(dataset) // cfg.train.batch_size)),
                lr_scheduler_type=cfg.train.scheduler,
                max_grad_norm=cfg.train.gradient_clip,
                optim="adamw_torch",
                train_sampling_strategy="group_by_length" if method == "hf_grouped" else "random",
                report_to=[],
                save_strategy="no",
                logging_strategy="no",
                use_cpu=not torch.cuda.is_available(),
                seed=cfg.seed,
                disable_tqdm=True,
            )
            Trainer(
                model=model,
                args=arguments,
                train_dataset=dataset,
                data_collator=DataCollatorWithPadding(tokenizer),
                callbacks=[StepClock()],
            ).train()
    return {
        "samples_per_second": _rate(step_ends, cfg.train.batch_size),
        "steps": len(step_ends),
        "peak_mb": peak_rss_mb(),
        "max_length": max_length,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--backbone", default="gemma3_270m")
    parser.add_argument("--cache", type=Path, default=None, help="converted backbones (default: RELEVANCE_CACHE)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from relevance.serving.scorer import default_cache

    cache = args.cache or default_cache()
    if args.worker:
        print(json.dumps(worker(args.worker, args.backbone, cache, args.rows_file)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        rows_file = Path(scratch) / "rows.json"
        rows = pairs(args.rows)
        rows_file.write_text(json.dumps(rows))
        results = {}
        for label, method in METHODS.items():
            command = [
                sys.executable,
                __file__,
                "--worker",
                method,
                "--backbone",
                args.backbone,
                "--cache",
                str(cache),
                "--rows-file",
                str(rows_file),
            ]
            results[label] = run_worker(label, command)
            print(f"{label}: {results[label]['samples_per_second']:.1f} samples/s", flush=True)
    baseline = results["plain HF Trainer + PEFT, dynamic padding, random order"]["samples_per_second"]
    body = [
        [
            label,
            f"{r['samples_per_second']:.1f}",
            f"{r['samples_per_second'] / baseline:.2f}x",
            r["steps"],
            r["max_length"],
            f"{r['peak_mb']:.0f}",
        ]
        for label, r in results.items()
    ]
    text = table(
        ["method", "samples/s", "vs plain Trainer", "steps", "length limit (prompt included)", "peak RSS MB"], body
    )
    text += (
        f"\n\n{args.rows} taxonomy QC rows, backbone {args.backbone}, batch 16, LoRA r8 alpha 16 on all linear "
        f"layers + the score head (the yes/no rows score with the pre-trained LM head, frozen), AdamW, clipping "
        f"1.0, fp32 on CPU; the first {WARM_UP_STEPS} steps are warm-up."
    )
    print()
    print(text)
    if not args.no_write:
        write_section(
            f"training-{args.backbone}",
            f"Training step: harness against a plain Trainer + PEFT ({args.backbone})",
            text,
        )


if __name__ == "__main__":
    main()
