"""Training and scoring throughput of the harness's own LoRA path at Qwen3-1.7B dimensions, on random weights.

What a user renting a GPU wants to know before a 12-14B run: how many tokens a second the LightningModule trains
(bf16, LoRA r16 on every linear layer, the classifier head), with and without DeepSpeed ZeRO-2, how many pairs a
second it scores, and what fraction of the GPU's peak bf16 rate that is (model FLOPs utilisation, MFU).

Random weights give the same speed as trained ones, so no download is needed. FLOPs are counted per token as
4 x (parameters in linear layers) for LoRA training (forward 2N, backward through the frozen weights 2N; the
adapters' own gradients are under 1%) plus 12 x layers x sequence length x attention width for the attention
scores, 2N + 4 x layers x L x width for scoring. The peak is the vendor's dense bf16 figure where the GPU is known,
and the rate of a large measured matrix product beside it.

On a machine without a GPU it runs a scaled-down model in fp32 so the test suite proves the script works; those
figures say nothing about GPUs.

    python bench/gpu_throughput.py                 # all rows, written to BENCHMARKS.md on a GPU
    python bench/gpu_throughput.py --tiny --no-write
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from common import table, write_section  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from relevance.model.heads import ClassifierHead  # noqa: E402
from relevance.model.module import RelevanceModule, apply_lora  # noqa: E402

# Qwen3-1.7B's published dimensions come from its backbone file (conf/backbone/qwen3_1_7b.yaml, `architecture`,
# the same the plan reads); tiny is the CPU stand-in.
DIMENSIONS = {
    "qwen3-1.7b": {
        key: value
        for key, value in OmegaConf.to_container(
            OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "backbone" / "qwen3_1_7b.yaml").architecture
        ).items()
        if key != "model_type"
    },
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=512,
        tie_word_embeddings=True,
    ),
}
# Dense bf16 tensor-core peak, TFLOP/s, from the vendors' data sheets (SXM parts).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "B200": 2250.0}


def build(dimensions: dict, dtype: torch.dtype, device: str, rank: int):
    """The backbone with the harness's own classifier head and LoRA (r, alpha 2r, all linear layers)."""
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    config = Qwen3Config(**dimensions, num_labels=1, pad_token_id=0)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForSequenceClassification(config).to(dtype)
    head = ClassifierHead()
    model = apply_lora(model, "all-linear", "score", r=rank, alpha=2 * rank, dropout=0.0, head=head)
    return model, head, config


def linear_parameters(config) -> int:
    """Parameters that take part in the per-token matrix products (embedding lookup excluded)."""
    c = config
    attention = c.hidden_size * c.head_dim * (c.num_attention_heads * 2 + c.num_key_value_heads * 2)
    mlp = 3 * c.hidden_size * c.intermediate_size
    return c.num_hidden_layers * (attention + mlp)


def flops_per_token(config, length: int, training: bool) -> float:
    n = linear_parameters(config)
    width = config.num_attention_heads * config.head_dim
    attention = config.num_hidden_layers * length * width
    return 4 * n + 12 * attention if training else 2 * n + 4 * attention


class Batches(torch.utils.data.Dataset):
    """Random full-length rows (every token counts; no padding)."""

    def __init__(self, n: int, length: int, vocab: int):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, vocab, (n, length), generator=generator)
        self.labels = torch.randint(0, 2, (n,), generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


class StepTimer(L.Callback):
    """Wall time of the steps after the warm-up ones, synchronised with the GPU."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.steps = warmup, None, 0

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            self._sync()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.steps += 1

    def seconds(self) -> float:
        self._sync()
        return time.perf_counter() - self.start


def train_row(args, strategy: str) -> dict:
    gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if gpu else torch.float32
    model, head, config = build(DIMENSIONS[args.dimensions], dtype, "cuda" if gpu else "cpu", args.rank)
    module = RelevanceModule(model, head, lr=1e-4, weight_decay=0.0, warmup_ratio=0.0, scheduler="constant")
    steps = args.warmup + args.steps
    data = Batches(steps * args.batch, args.length, config.vocab_size)
    timer = StepTimer(args.warmup)
    lightning_strategy = "auto"
    if strategy == "deepspeed_stage_2":
        from lightning.pytorch.strategies import DeepSpeedStrategy

        lightning_strategy = DeepSpeedStrategy(stage=2)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        strategy=lightning_strategy,
        precision="bf16-true" if gpu else "32-true",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[timer],
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=args.batch))
    seconds = timer.seconds()
    tokens = timer.steps * args.batch * args.length
    return {
        "what": f"train, {strategy}",
        "tokens_per_s": tokens / seconds,
        "flops": tokens * flops_per_token(config, args.length, training=True) / seconds,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if gpu else float("nan"),
        "trainable_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
    }


def score_row(args) -> dict:
    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    model, head, config = build(DIMENSIONS[args.dimensions], torch.bfloat16 if gpu else torch.float32, device, 16)
    model.eval()
    batch = Batches(args.score_batch, args.length, config.vocab_size)[:]
    batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                if gpu:
                    torch.cuda.synchronize()
                start = time.perf_counter()
            head(model, batch)
        if gpu:
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    pairs = args.steps * args.score_batch
    return {
        "what": f"score, batch {args.score_batch}",
        "pairs_per_s": pairs / seconds,
        "tokens_per_s": pairs * args.length / seconds,
        "flops": pairs * args.length * flops_per_token(config, args.length, training=False) / seconds,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if gpu else float("nan"),
    }


def measured_matmul_tflops() -> float:
    """The rate of an 8192^3 bf16 matrix product: what this GPU reaches on the easiest work there is."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12


def peak_tflops(name: str) -> float | None:
    return next((value for key, value in PEAK_TFLOPS.items() if key in name), None)


def measure(args) -> dict:
    gpu = torch.cuda.is_available()
    args.dimensions = "tiny" if args.tiny or not gpu else "qwen3-1.7b"
    if not gpu and not args.tiny:
        print("No GPU here: running the scaled-down CPU variant (its figures say nothing about GPUs).")
    name = torch.cuda.get_device_name() if gpu else "CPU"
    peak = peak_tflops(name) if gpu else None
    strategies = ["auto"]
    if gpu and importlib.util.find_spec("deepspeed") is not None:
        strategies.append("deepspeed_stage_2")
    rows = [train_row(args, strategy) for strategy in strategies]
    rows.append(score_row(args))
    for row in rows:
        row["tflops"] = row.pop("flops") / 1e12
        row["mfu"] = row["tflops"] / peak if peak else None
    return {
        "device": name,
        "gpu": gpu,
        "dimensions": args.dimensions,
        "torch": torch.__version__,
        "deepspeed": "deepspeed_stage_2" in strategies,
        "peak_tflops": peak,
        "matmul_tflops": measured_matmul_tflops() if gpu else None,
        "batch": args.batch,
        "length": args.length,
        "rank": args.rank,
        "rows": rows,
    }


def render(results: list[dict]) -> str:
    """One table for one or more measurements (e.g. two row lengths) on the same machine."""
    headers = ["tokens per row", "what", "tokens/s", "pairs/s", "model TFLOP/s", "MFU", "peak GPU memory GB"]
    rows = [
        [
            f"{result['length']} (batch {result['batch']})" if r["what"].startswith("train") else result["length"],
            r["what"],
            f"{r['tokens_per_s']:,.0f}",
            f"{r['pairs_per_s']:,.0f}" if "pairs_per_s" in r else "",
            f"{r['tflops']:.1f}",
            f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a",
            f"{r['peak_gb']:.1f}",
        ]
        for result in results
        for r in result["rows"]
    ]
    first = results[0]
    trainable = next(r["trainable_m"] for r in first["rows"] if "trainable_m" in r)
    notes = (
        f"{first['device']}, torch {first['torch']}, {first['dimensions']} dimensions (random weights), "
        f"LoRA r{first['rank']} on all linear layers ({trainable:.1f} M trainable) with the classifier head, "
        f"rows of random tokens with no padding."
    )
    if first["gpu"]:
        notes += (
            f" MFU is against the data sheet's dense bf16 peak, {first['peak_tflops'] or 'unknown'} TFLOP/s; an "
            f"8192^3 bf16 matrix product reached {first['matmul_tflops']:.0f} here."
        )
        if not first["deepspeed"]:
            notes += " DeepSpeed was not installed, so its rows are missing."
    return table(headers, rows) + "\n\n" + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the scaled-down CPU variant (what the tests run)")
    parser.add_argument("--batch", type=int, default=8, help="training rows per step")
    parser.add_argument("--score-batch", type=int, default=64, help="rows per scoring batch")
    parser.add_argument("--length", type=int, default=512, help="tokens per row")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--json", type=Path, help="also write the measurement here")
    parser.add_argument("--table-from", type=Path, nargs="+", help="measure nothing: render these --json files")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.table_from:
        results = [json.loads(path.read_text()) for path in args.table_from]
    else:
        results = [measure(args)]
        if args.json:
            args.json.write_text(json.dumps(results[0], indent=1))
    body = render(results)
    print(body)
    if results[0]["gpu"] and not args.no_write:
        write_section("gpu_throughput", "GPU throughput (LoRA training and scoring, Qwen3-1.7B dimensions)", body)


if __name__ == "__main__":
    main()
