"""The harness's bi-encoder scorer against sentence-transformers on the same weights and the same pairs.

    python bench/bi_encoder_speed.py                  # 2,000 taxonomy pairs, multilingual-e5-small, 3 repeats
    python bench/bi_encoder_speed.py --rows 500 --repeats 2

Trains a small `experiment=offline_best` model on demo rows (catalogue margin off, so both sides score the plain
cosine), then scores the same taxonomy QC pairs with its refit through `RelevanceScorer` (the served model's
path: preprocessing, tokenising, scoring) and with sentence-transformers (`SentenceTransformer` over the refit's
own encoder, mean pooling, normalised; the same preprocessed texts with E5's prefixes; `encode` of the queries and
of the targets, then the cosine through the refit's trained scale and bias). Repeats alternate between the two;
the table gives each one's median pairs/s, the ratio, and the largest score difference. Needs the `bench` extra
(sentence-transformers).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, table, write_section  # noqa: E402
from inference import pairs  # noqa: E402


def train(scratch: Path) -> Path:
    """A refit bi-encoder's bundle folder."""
    import mlflow

    uri = f"sqlite:///{scratch}/mlflow.db"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "experiment=offline_best",
        "head.catalogue_margin=false",
        "data.demo.train_rows=240",
        "split.n_folds=2",
        "train.epochs=1",
        "train.require_learning=false",
        "progress=false",
        f"tracking.uri={uri}",
        f"tracking.artifact_root={scratch}/a",
    ]
    subprocess.run(command, cwd=scratch, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mlflow.set_tracking_uri(uri)
    run = mlflow.search_runs(experiment_names=["relevance"], filter_string="tags.`relevance.level` = 'parent'")
    model_uri = run.iloc[0]["tags.relevance.model_uri"]
    model = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(scratch / "model")))
    return model / "artifacts" / "bundle"


def bi_encoder(scorer):
    """The scorer's MeanPooledBiEncoder (under PEFT's wrapper when it trained LoRA)."""
    return scorer.model.get_base_model() if hasattr(scorer.model, "get_base_model") else scorer.model


def sentence_transformer(scorer, folder: Path):
    """sentence-transformers over the scorer's own trained encoder: mean pooling, then normalised."""
    from sentence_transformers import SentenceTransformer, models

    bi_encoder(scorer).encoder.save_pretrained(folder)
    scorer.tokenizer.save_pretrained(folder)
    transformer = models.Transformer(str(folder), max_seq_length=scorer.bundle.max_length)
    dimension = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = models.Pooling(dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    from relevance.data.records import Record
    from relevance.serving.scorer import RelevanceScorer

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        scorer = RelevanceScorer(train(scratch), ensemble="refit")
        rows = pairs(args.rows)
        records = [Record(i, "QC", row["language"], row["query"], row["target"]) for i, row in enumerate(rows)]
        scorer.predict_records(records[:8])  # the refit's trained weights are now in place (they load on first use)
        st = sentence_transformer(scorer, scratch / "st")
        head = getattr(bi_encoder(scorer), bi_encoder(scorer).head_module)
        prefixes = scorer.head.options.query_prefix, scorer.head.options.target_prefix
        batch = scorer.bundle.eval_batch_size

        def harness() -> np.ndarray:
            return scorer.predict_records(records, batch_size=batch)

        def sentence_transformers() -> np.ndarray:
            texts = scorer.preprocessor.inputs(records)  # the same cleaning, as the harness times its own
            queries = st.encode([prefixes[0] + q for q, _ in texts], batch_size=batch, convert_to_tensor=True)
            targets = st.encode([prefixes[1] + t for _, t in texts], batch_size=batch, convert_to_tensor=True)
            with torch.inference_mode():
                return torch.sigmoid(head((queries * targets).sum(-1))).numpy().ravel()

        methods = {"harness (RelevanceScorer)": harness, "sentence-transformers": sentence_transformers}
        rates = {name: [] for name in methods}
        scores = {}
        for name, method in methods.items():  # untimed first call of each
            scores[name] = method()
        for _ in range(args.repeats):
            for name, method in methods.items():
                started = time.perf_counter()
                method()
                rates[name].append(len(records) / (time.perf_counter() - started))
    difference = float(np.max(np.abs(scores["harness (RelevanceScorer)"] - scores["sentence-transformers"])))
    distinct = len({row["query"] for row in rows}), len({row["target"] for row in rows})
    reference = statistics.median(rates["sentence-transformers"])
    rows = [
        [name, f"{statistics.median(r):.1f}", f"{min(r):.1f}-{max(r):.1f}", f"{statistics.median(r) / reference:.2f}x"]
        for name, r in rates.items()
    ]
    body = table(["method", "pairs/s (median)", "range", "vs sentence-transformers"], rows)
    body += (
        f"\n\n{args.rows} taxonomy QC pairs, multilingual-e5-small (a refit of `experiment=offline_best`, catalogue "
        f"margin off), batch {batch}, fp32 on this machine's CPU, {args.repeats} alternating repeats; largest "
        f"score difference between the two: {difference:.1e}. sentence-transformers encodes all {2 * args.rows} "
        f"texts; the harness encodes each distinct one once ({distinct[0]} queries and {distinct[1]} paths), each "
        f"side in batches of like length."
    )
    print(body)
    write_section("bi-encoder-speed", "Bi-encoder scoring: harness against sentence-transformers", body)


if __name__ == "__main__":
    main()
