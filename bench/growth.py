"""How time and memory grow with the number of rows, for the stages before and after the model.

    python bench/growth.py                         # 1e3, 1e4, 1e5 QC rows of the demo generator
    python bench/growth.py --sizes 1000 10000

Stages: loading (read + validate + clean a competition-format file), augmentation (tags; hard negatives mined
by TF-IDF over the distinct targets), splitting (query-grouped 5 folds), tokenisation for 5-fold training with the
Gemma-3 tokenizer (every fold re-tokenising its rows, as plain scripts do, against the harness's token cache), and
scoring (F1 at 0.5, the exact best threshold and per-language F1 of out-of-fold scores). Each stage is timed
untraced, then run again under `tracemalloc` for its peak Python/NumPy memory (the Rust tokenizer's own buffers
are not seen; its output is).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_section  # noqa: E402

N_FOLDS = 5


def stages(path: Path, tokenizer, cache: Path) -> dict:
    """name -> a function running the stage on the file's rows (setup done here, outside the clock)."""
    from relevance.augment import rewrite_text
    from relevance.augment.hard_negatives import hard_negatives
    from relevance.data.clean import clean_records
    from relevance.data.reader import read_records
    from relevance.data.splits import assign_folds
    from relevance.evaluation import metrics
    from relevance.model.batches import TokenCache

    records, _ = clean_records(read_records(path, "QC", require_label=True))
    tags = OmegaConf.create(
        {"tags": {"language": True, "hierarchy": True, "attributes": False, "brands": [], "colors": []}}
    )
    negatives = OmegaConf.create(
        {"embedder": "tfidf", "window": [5, 20], "rows": len(records) // 10, "translate_to": None}
    )
    folds = assign_folds(records, "query_group", N_FOLDS, 0)
    prompts = [f"query: {r.query} category: {r.target}" for r in records]
    labels = np.array([r.label for r in records])
    scores = np.clip(labels * 0.3 + np.random.default_rng(0).random(len(records)) * 0.7, 0, 1)
    languages = [r.language for r in records]

    def tokenise(token_cache: TokenCache | None):
        for fold in range(N_FOLDS):
            train = [p for p, f in zip(prompts, folds) if f != fold]
            held_out = [p for p, f in zip(prompts, folds) if f == fold]
            for texts in (train, held_out):
                if token_cache is None:
                    tokenizer(texts, truncation=True, max_length=96)
                else:
                    token_cache.encode(tokenizer, texts, 96)

    return {
        "loading (read, validate, clean)": lambda: clean_records(read_records(path, "QC", require_label=True)),
        "augmentation: tags": lambda: rewrite_text(records, tags),
        "augmentation: hard negatives (TF-IDF)": lambda: hard_negatives(records, negatives, None, cache, 0),
        "splitting (query groups, 5 folds)": lambda: assign_folds(records, "query_group", N_FOLDS, 0),
        "tokenisation, 5 folds, every fold anew": lambda: tokenise(None),
        "tokenisation, 5 folds, token cache": lambda: tokenise(TokenCache()),
        "scoring (F1, exact threshold, per language)": lambda: (
            metrics.best_f1_threshold(labels, scores),
            metrics.scores_at(labels, scores, 0.5),
            metrics.per_language(languages, labels, scores, 0.5, set(languages)),
        ),
    }


def measure(run) -> tuple[float, float]:
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--backbone", default="gemma3_270m", help="whose tokenizer (gemma3_270m, tiny)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    from inference import compose

    from relevance.model.backbones import load_tokenizer
    from relevance.serving.scorer import default_cache
    from relevance.synthetic.demo import DemoSpec, generate_demo
    from relevance.weights import resolve_source

    cache = default_cache()
    cfg = compose(args.backbone, cache)
    tokenizer = load_tokenizer(cfg.backbone, resolve_source(cfg.backbone, cache))
    results: dict[str, dict[int, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for n in args.sizes:
            spec = DemoSpec(train_rows=n, dev_rows=10, test_rows=10, queries_per_language=max(40, n // 60))
            folder = generate_demo(Path(scratch) / f"demo-{n}", spec)
            for name, run in stages(folder / "train_QC.txt", tokenizer, Path(scratch)).items():
                results.setdefault(name, {})[n] = measure(run)
                print(f"{n:>8,} {name}: {results[name][n][0]:.3f} s, {results[name][n][1]:.1f} MB", flush=True)
    headers = ["stage"] + [f"{n:,} rows: s" for n in args.sizes] + [f"{n:,} rows: MB" for n in args.sizes]
    body = [
        [name] + [f"{by_size[n][0]:.3f}" for n in args.sizes] + [f"{by_size[n][1]:.1f}" for n in args.sizes]
        for name, by_size in results.items()
    ]
    text = table(headers, body)
    text += (
        "\n\nSeconds untraced; MB is the peak of Python and NumPy allocations during the stage (tracemalloc). "
        f"Rows from the demo generator (QC, six languages); tokenizer of {args.backbone}."
    )
    print()
    print(text)
    if not args.no_write:
        write_section("growth", "Growth with data size: loading, augmentation, splitting, tokenisation, scoring", text)


if __name__ == "__main__":
    main()
