"""Quality on real multilingual text: `data=taxonomy` (Google Product Taxonomy), trained on en/es/fr/ja/pt, judged on
new categories in those languages (seen) and in de/it/pl (unseen). One table: the all-positive floor, a TF-IDF
character n-gram + logistic regression baseline, zero-shot embedding similarity, and the harness with Gemma-3-270M,
alone and with each method of the methods issue.

    python bench/taxonomy_quality.py                          # every row (about an hour on 2 CPU cores)
    python bench/taxonomy_quality.py --only floor tfidf        # some rows
    python bench/taxonomy_quality.py --table-from quality.json # the table of an earlier (or unfinished) run

Every row's threshold is tuned on out-of-fold scores of the training rows (query-grouped folds), never on dev.
Figures are kept in --json after each row, so an interrupted run loses one row at most.
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
from common import ROOT, need_taxonomy, run_train, table, write_section  # noqa: E402

from relevance import metrics  # noqa: E402
from relevance.data.taxonomy import TaxonomySpec, generate_taxonomy  # noqa: E402

SPEC = TaxonomySpec(train_rows=1500, dev_rows_per_language=100, qi_rows=750)  # about 8 minutes per harness row
UNSEEN = set(SPEC.eval_languages)
HARNESS = ["data=taxonomy", "backbone=gemma3_270m", "train.epochs=1", "train.lr=1.5e-3",
           f"data.taxonomy.train_rows={SPEC.train_rows}", f"data.taxonomy.dev_rows_per_language={SPEC.dev_rows_per_language}",
           f"data.taxonomy.qi_rows={SPEC.qi_rows}"]
HARNESS_ROWS = {
    "harness: Gemma-3-270M + LoRA, classifier head": [],
    "+ translation concat (taxonomy's English names)": ["augmentation=[translate]"],
    "+ hard negatives (TF-IDF neighbours)": ["augmentation=[hard_negatives]"],
    "+ tags (language, category levels)": ["augmentation=[tags]"],
    "yes/no head instead of the classifier": ["head=yes_no"],
    "+ TAPT (stage 1 on the taxonomy's QI-style rows)": ["tapt=from_other_task"],
}
KEYS = {"floor": "all-positive floor", "tfidf": "TF-IDF char 2-5-grams + logistic regression",
        "zero_shot_e5": "zero-shot: multilingual-e5-small cosine",
        "zero_shot": "zero-shot: Gemma-3-270M mean-pooled cosine"}


def _files(scratch: Path):
    from relevance.clean import clean_records
    from relevance.data.reader import read_records

    folder = generate_taxonomy(need_taxonomy(), scratch / "taxonomy", SPEC)
    train, _ = clean_records(read_records(folder / "train_QC.txt", "QC", require_label=True))
    dev, _ = clean_records(read_records(folder / "dev_QC.txt", "QC", require_label=True))
    return train, dev


def _judge(train_labels, train_scores, dev, dev_scores) -> dict:
    """Seen/unseen dev F1 at the threshold that is best on the training rows' (out-of-fold) scores."""
    threshold = metrics.best_f1_threshold(train_labels, train_scores).threshold
    labels = np.array([r.label for r in dev])
    unseen = np.array([r.language in UNSEEN for r in dev])
    return {"oof_best_f1": metrics.best_f1_threshold(train_labels, train_scores).f1,
            "dev_seen_f1_at_oof_threshold": metrics.scores_at(labels[~unseen], dev_scores[~unseen], threshold).f1,
            "dev_unseen_f1_at_oof_threshold": metrics.scores_at(labels[unseen], dev_scores[unseen], threshold).f1}


def floor(train, dev, scratch) -> dict:
    return _judge(np.array([r.label for r in train]), np.ones(len(train)), dev, np.ones(len(dev)))


def tfidf(train, dev, scratch) -> dict:
    """Pair features: the element-wise product of query and target character n-gram TF-IDF vectors (which
    n-grams they share, weighted), plus their cosine; logistic regression; out-of-fold scores by query groups."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
    vectorizer.fit([r.query for r in train] + [r.target for r in train])

    def features(rows):
        q, t = vectorizer.transform([r.query for r in rows]), vectorizer.transform([r.target for r in rows])
        product = q.multiply(t).tocsr()
        return hstack([product, csr_matrix(np.asarray(product.sum(axis=1)))]).tocsr()

    x, y = features(train), np.array([r.label for r in train])
    model = LogisticRegression(C=4.0, max_iter=2000)
    oof = cross_val_predict(model, x, y, groups=[r.query for r in train], cv=GroupKFold(2), method="predict_proba")[:, 1]
    model.fit(x, y)
    return _judge(y, oof, dev, model.predict_proba(features(dev))[:, 1])


def _cosine_row(location: str, train, dev, query_prefix: str = "", target_prefix: str = "") -> dict:
    """Cosine of mean-pooled last hidden states (no training); threshold from the training rows."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location, dtype=torch.float32).eval()
    texts = sorted({query_prefix + r.query for r in train + dev} | {target_prefix + r.target for r in train + dev},
                   key=len)
    vectors = {}
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = texts[start:start + 64]
            encoded = tokenizer(batch, padding=True, truncation=True, max_length=64, return_tensors="pt")
            hidden = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            vectors.update(zip(batch, pooled.numpy()))

    def cosine(rows):
        return np.array([float(vectors[query_prefix + r.query] @ vectors[target_prefix + r.target]) for r in rows])

    return _judge(np.array([r.label for r in train]), cosine(train), dev, cosine(dev))


def zero_shot(train, dev, scratch) -> dict:
    """The backbone's own hidden states as embeddings (a decoder LM: not trained to embed)."""
    from relevance.backbones import resolve_source
    from relevance.serving import default_cache
    from inference import compose

    cfg = compose("gemma3_270m", default_cache())
    return _cosine_row(resolve_source(cfg.backbone, default_cache()), train, dev)


def zero_shot_e5(train, dev, scratch) -> dict:
    """multilingual-e5-small, a multilingual embedding model, with its query:/passage: prefixes."""
    from relevance import packaged_e5
    from relevance.serving import default_cache

    location = packaged_e5.embedder_location(packaged_e5.HUB_ID, default_cache())
    return _cosine_row(location, train, dev, "query: ", "passage: ")


def harness(overrides: list[str], scratch: Path) -> dict:
    run_dir = scratch / f"run-{time.time_ns()}"
    run_dir.mkdir()
    found = run_train([*HARNESS, f"data.dir={need_taxonomy()}", *overrides], run_dir)
    return {"oof_best_f1": found["oof_best_f1"], "minutes": found["minutes"],
            "dev_seen_f1_at_oof_threshold": found["dev_seen_f1_at_oof_threshold"],
            "dev_unseen_f1_at_oof_threshold": found["dev_unseen_f1_at_oof_threshold"],
            "dev_unseen_f1_at_0.5": found.get("dev_unseen_f1_at_0.5")}


def render(results: dict) -> str:
    order = list(KEYS.values()) + list(HARNESS_ROWS)
    body = []
    for name in order:
        if name in results:
            r = results[name]
            body.append([name, f"{r['oof_best_f1']:.3f}", f"{r['dev_seen_f1_at_oof_threshold']:.3f}",
                         f"{r['dev_unseen_f1_at_oof_threshold']:.3f}",
                         f"{r['minutes']:.1f}" if "minutes" in r else "-"])
    text = table(["method", "out-of-fold F1 (seen, best threshold)", "dev F1, seen languages",
                  "dev F1, unseen de/it/pl", "minutes"], body)
    spec = SPEC
    return text + (f"\n\n`data=taxonomy` with {spec.train_rows} training rows (en/es/fr/ja/pt, one positive path, "
                   f"a sibling's and a random one per query), dev {spec.dev_rows_per_language} rows per language on "
                   f"the {spec.heldout_share:.0%} of categories kept out of training; dev F1 at the threshold tuned "
                   f"on the training rows' out-of-fold scores. Harness rows: `python train.py {' '.join(HARNESS)} "
                   f"data.dir=...` plus the row's overrides (2 query-grouped folds, fold ensemble on dev).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", help=f"rows: {', '.join(KEYS)}, or harness row numbers 0-"
                                                 f"{len(HARNESS_ROWS) - 1}")
    parser.add_argument("--json", type=Path, default=ROOT / "sweeps" / "taxonomy_quality.json")
    parser.add_argument("--table-from", type=Path)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    if args.table_from:
        text = render(json.loads(args.table_from.read_text()))
    else:
        results = json.loads(args.json.read_text()) if args.json.is_file() else {}
        wanted = args.only or list(KEYS) + [str(i) for i in range(len(HARNESS_ROWS))]
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            train, dev = _files(scratch)
            for key in wanted:
                if key in KEYS:
                    name, started = KEYS[key], time.perf_counter()
                    results[name] = globals()[key](train, dev, scratch)
                    results[name]["minutes"] = (time.perf_counter() - started) / 60
                else:
                    name = list(HARNESS_ROWS)[int(key)]
                    results[name] = harness(HARNESS_ROWS[name], scratch)
                print(name, {k: round(v, 4) for k, v in results[name].items() if v is not None}, flush=True)
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=2))
        text = render(results)
    print()
    print(text)
    if not args.no_write:
        write_section("taxonomy-quality", "Quality on real multilingual data: the taxonomy benchmark", text)


if __name__ == "__main__":
    main()
