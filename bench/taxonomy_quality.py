"""Quality on real multilingual text: `data=taxonomy` (Google Product Taxonomy), trained on en/es/fr/ja/pt, judged on
new categories in those languages (seen) and in de/it/pl (unseen). One table: the all-positive floor, a TF-IDF
character n-gram + logistic regression baseline, zero-shot embedding similarity, and harness runs (backbones,
heads, the best offline recipe and each method on top of it), each as mean +- standard deviation over seeds, with
wall time and peak memory.

    python bench/taxonomy_quality.py                               # every row, 3 seeds (hours on 2 CPU cores)
    python bench/taxonomy_quality.py --only floor tfidf e5_best    # some rows (keys: --help)
    python bench/taxonomy_quality.py --only gemma_yes_no --seeds 0 1
    python bench/taxonomy_quality.py --table-from quality.json     # the table of an earlier (or unfinished) run

Every row's threshold is tuned on out-of-fold scores of the training rows (query-grouped folds), never on dev.
Figures are kept in --json after each run (bench/results/taxonomy_quality.json, committed with the table it
renders), so an interrupted run loses one run at most; rerunning skips the (row, seed) pairs already there.
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
from common import ROOT, Figures, chosen_rows, need_taxonomy, peak_rss_mb, run_train, table, write_section  # noqa: E402

from relevance.evaluation import metrics  # noqa: E402
from relevance.synthetic.taxonomy import TaxonomySpec, generate_taxonomy  # noqa: E402

SPEC = TaxonomySpec(train_rows=6000, dev_rows_per_language=150, qi_rows=1500)
UNSEEN = set(SPEC.eval_languages)
DATA = [
    "data=taxonomy",
    f"data.taxonomy.train_rows={SPEC.train_rows}",
    f"data.taxonomy.dev_rows_per_language={SPEC.dev_rows_per_language}",
    f"data.taxonomy.qi_rows={SPEC.qi_rows}",
]
GEMMA = ["backbone=gemma3_270m", "train.epochs=1"]
# offline_best as it was until 2026-12-07, when its dropout-on pairing (the e5_dropout_shared row: train.dropout=true
# threshold.unseen=shared) won on three seeds and became offline_best. The method rows below were measured on this
# recipe (the older ones on plain cosine, as their names say); spelled out so that they rerun on what they measured.
BEST = ["experiment=offline_best", "train.dropout=false", "threshold.unseen=matched_rate"]
# A distilled row names its teacher by this placeholder: the harness trains offline_best on the same seed first, in the
# same store (its model logged), and puts that run's id in its place.
TEACHER = "<offline_best of the same seed>"
DISTILLED = [*GEMMA, f"distill.teachers=['{TEACHER}']"]
# Most method rows on top of offline_best were measured before it scored by the catalogue margin: they keep cosine
# scoring ("plain cosine" in their names), so they compare with the plain-cosine row; the others with offline_best.
BEST_COSINE = [*BEST, "head.catalogue_margin=false"]
HARNESS_ROWS = {  # key: (row name, overrides)
    "gemma_classifier": ("Gemma-3-270M + LoRA, classifier head, 1 epoch", GEMMA),
    # Gemma-3 has no dropout of its own (attention_dropout 0.0: train.dropout changes nothing); LoRA's is its only one.
    # 0.05: the first-placed team's value (experiment=dilab).
    "gemma_lora_dropout": (
        "Gemma-3-270M + LoRA, classifier head, 1 epoch, LoRA dropout 0.05 while training (lora.dropout=0.05)",
        [*GEMMA, "lora.dropout=0.05"],
    ),
    "gemma_yes_no": ("Gemma-3-270M + LoRA, yes/no head (pair loss), 1 epoch", [*GEMMA, "head=yes_no"]),
    "gemma_yes_no_vocab": (
        "Gemma-3-270M + LoRA, yes/no head (vocabulary loss), 1 epoch",
        [*GEMMA, "head=yes_no", "head.loss=vocab"],
    ),
    "e5_best": (
        "offline_best until 2026-12-07: multilingual-e5-small bi-encoder, full fine-tune, 2 epochs, leaf-first paths, "
        "catalogue margin, unseen languages at a matched rate",
        BEST,
    ),
    "e5_cosine": (
        "offline_best scored by plain cosine (head.catalogue_margin=false; the recipe before the margin)",
        BEST_COSINE,
    ),
    "e5_frozen6": (
        "offline_best, plain cosine, with its lowest 6 of 12 blocks frozen (backbone.frozen_layers=6)",
        [*BEST_COSINE, "backbone.frozen_layers=6"],
    ),
    "e5_rows12k": (
        "offline_best, plain cosine, on 12,000 training rows, 1 epoch (as many steps as 6,000 rows x 2 epochs)",
        [*BEST_COSINE, "data.taxonomy.train_rows=12000", "train.epochs=1"],
    ),
    "e5_root_first": (
        "multilingual-e5-small bi-encoder, plain cosine, full fine-tune, 2 epochs (paths root first)",
        [*BEST_COSINE, "clean.category_order=root_first"],
    ),
    "e5_dropout": (
        "offline_best with the encoder's own dropout on while training (train.dropout=true; 0.1)",
        [*BEST, "train.dropout=true"],
    ),
    "e5_dropout_shared": (
        "experiment=offline_best since 2026-12-07: offline_best until then with dropout on while training, every "
        "language at the folds' threshold (train.dropout=true threshold.unseen=shared)",
        [*BEST, "train.dropout=true", "threshold.unseen=shared"],
    ),
    # The taxonomy's own de/it/pl names of the training queries stand in for a machine translator (translator=file
    # reads them from the generated translations.jsonl): an upper bound of what translator=nllb or madlad would give.
    # Dev's categories are never translated, so they stay new in every language.
    "e5_synthesize": (
        "experiment=offline_best + translation synthesis: 600 training rows copied into each of de/it/pl, the query "
        "in the taxonomy's own name for it (an oracle translator)",
        [
            "experiment=offline_best",
            "augmentation=[translate]",
            "augmentation.translate.mode=synthesize",
            "augmentation.translate.languages=[de,it,pl]",
            "augmentation.translate.rows_per_language=600",
        ],
    ),
    "e5_in_batch": (
        "offline_best trained with in-batch negatives (head.loss=in_batch: each query against every category of its "
        "batch, + BCE)",
        [*BEST, "head.loss=in_batch"],
    ),
    "e5_group": (
        "offline_best trained with the group loss (head.loss=group: each positive against its query's negatives, "
        "+ BCE)",
        [*BEST, "head.loss=group"],
    ),
    "e5_listwise": (
        "offline_best trained with the listwise loss (head.loss=listwise: ListNet over each query's rows, + BCE)",
        [*BEST, "head.loss=listwise"],
    ),
    "gemma_distilled_soft": (
        "Gemma-3-270M + LoRA, classifier head, 1 epoch, distilled from offline_best's out-of-fold scores "
        "(head.loss=soft_labels)",
        [*DISTILLED, "head.loss=soft_labels"],
    ),
    "gemma_distilled_kl": (
        "Gemma-3-270M + LoRA, classifier head, 1 epoch, distilled from offline_best's out-of-fold scores "
        "(head.loss=kl, each query's candidates)",
        [*DISTILLED, "head.loss=kl"],
    ),
    "e5_cross_encoder": (
        "multilingual-e5-small cross-encoder (classifier head), full fine-tune, 3 epochs (paths root first)",
        [*BEST_COSINE, "head=classifier", "train.epochs=3", "train.head_lr=5e-3", "clean.category_order=root_first"],
    ),
    "e5_translate": (
        "offline_best, plain cosine, + translation concat (taxonomy's English names)",
        [*BEST_COSINE, "augmentation=[translate]"],
    ),
    "e5_hard_negatives": (
        "offline_best, plain cosine, + hard negatives (TF-IDF neighbours)",
        [*BEST_COSINE, "augmentation=[hard_negatives]"],
    ),
    "e5_margin_hard_negatives": (
        "offline_best + hard negatives (TF-IDF neighbours)",
        [*BEST, "augmentation=[hard_negatives]"],
    ),
    "e5_tags": (
        "offline_best, plain cosine, + tags (language, category levels; paths root first)",
        [*BEST_COSINE, "augmentation=[tags]", "clean.category_order=root_first"],
    ),
    "e5_self_validation": (
        "offline_best, plain cosine, + self-validation (drop contradicted rows)",
        [*BEST_COSINE, "augmentation=[self_validation]"],
    ),
    "e5_tapt": (
        "offline_best, plain cosine, + TAPT (stage 1 on the taxonomy's QI-style rows)",
        [*BEST_COSINE, "tapt=from_other_task"],
    ),
}
KEYS = {
    "floor": "all-positive floor",
    "tfidf": "TF-IDF char 2-5-grams + logistic regression",
    "zero_shot_e5": "zero-shot: multilingual-e5-small cosine",
    "zero_shot_e5_margin": "zero-shot: multilingual-e5-small cosine margin over the other categories",
    "zero_shot": "zero-shot: Gemma-3-270M mean-pooled cosine",
}
# The table gathers rows run at different times (each row's own command is in BENCHMARKS.md's prose), so its header
# shows how to add a row or seed and how to redraw it, not the last `--only` run.
GATHERED_COMMAND = (
    "python bench/taxonomy_quality.py --only <row> --seeds 42 0   # adds a row's missing seeds, redraws the table\n"
    "python bench/taxonomy_quality.py --table-from bench/results/taxonomy_quality.json   # redraws it only"
)
FIGURES = [
    "oof_best_f1",
    "dev_seen_f1_at_oof_threshold",
    "dev_unseen_f1_at_oof_threshold",
    "dev_unseen_f1_at_matched_rate",
    "dev_refit_seen_f1_at_matched_threshold",
    "dev_refit_unseen_f1_at_matched_threshold",
    "dev_refit_unseen_f1_at_oof_threshold",
    "dev_refit_seen_f1_at_oof_threshold",
    "dev_refit_unseen_f1_at_matched_rate",
    "minutes",
    "peak_mb",
]


def _files(scratch: Path):
    from relevance.data.clean import clean_records
    from relevance.data.reader import read_records

    folder = generate_taxonomy(need_taxonomy(), scratch / "taxonomy", SPEC)
    train, _ = clean_records(read_records(folder / "train_QC.txt", "QC", require_label=True))
    dev, _ = clean_records(read_records(folder / "dev_QC.txt", "QC", require_label=True))
    user, _ = clean_records(read_records(folder / "dev_user_QC.txt", "QC", require_label=True))
    return train, {"dev": dev, "user": user}


def _seen_unseen(rows, scores, threshold, prefix: str, suffix: str) -> dict:
    labels = np.array([r.label for r in rows])
    unseen = np.array([r.language in UNSEEN for r in rows])
    threshold = np.broadcast_to(threshold, scores.shape)
    return {
        f"{prefix}_seen_f1{suffix}": metrics.scores_at(labels[~unseen], scores[~unseen], threshold[~unseen]).f1,
        f"{prefix}_unseen_f1{suffix}": metrics.scores_at(labels[unseen], scores[unseen], threshold[unseen]).f1,
    }


def _judge(train_labels, train_scores, views: dict, score) -> dict:
    """Seen/unseen F1 of each view (dev: category names; user: users' queries) at the threshold that is best on the
    training rows' (out-of-fold) scores; `score(rows)` gives a view's scores."""
    best = metrics.best_f1_threshold(train_labels, train_scores)
    figures = {"oof_best_f1": best.f1}
    for view, rows in views.items():
        figures |= _seen_unseen(rows, score(rows), best.threshold, view, "_at_oof_threshold")
    return figures


def floor(train, views, scratch) -> dict:
    return _judge(np.array([r.label for r in train]), np.ones(len(train)), views, lambda rows: np.ones(len(rows)))


def tfidf(train, views, scratch) -> dict:
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
    oof = cross_val_predict(model, x, y, groups=[r.query for r in train], cv=GroupKFold(2), method="predict_proba")[
        :, 1
    ]
    model.fit(x, y)
    return _judge(y, oof, views, lambda rows: model.predict_proba(features(rows))[:, 1])


def _cosine_row(
    location: str, train, views, query_prefix: str = "", target_prefix: str = "", margin: bool = False
) -> dict:
    """Cosine of mean-pooled last hidden states (no training); threshold from the training rows. `margin`: a
    pair's cosine minus the query's best cosine with any other category the rows name (as head.catalogue_margin
    scores)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location, dtype=torch.float32).eval()
    every = train + [r for rows in views.values() for r in rows]
    texts = sorted({query_prefix + r.query for r in every} | {target_prefix + r.target for r in every}, key=len)
    vectors = {}
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = texts[start : start + 64]
            encoded = tokenizer(batch, padding=True, truncation=True, max_length=64, return_tensors="pt")
            hidden = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            vectors.update(zip(batch, pooled.numpy()))

    categories = sorted({r.target for r in every})
    catalogue = np.stack([vectors[target_prefix + c] for c in categories])
    column = {c: i for i, c in enumerate(categories)}

    def cosine(rows):
        scores = np.array([float(vectors[query_prefix + r.query] @ vectors[target_prefix + r.target]) for r in rows])
        if not margin:
            return scores
        against = np.stack([vectors[query_prefix + r.query] for r in rows]) @ catalogue.T
        against[np.arange(len(rows)), [column[r.target] for r in rows]] = -np.inf
        return scores - against.max(axis=1)

    return _judge(np.array([r.label for r in train]), cosine(train), views, cosine)


def zero_shot(train, views, scratch) -> dict:
    """The backbone's own hidden states as embeddings (a decoder LM: not trained to embed)."""
    from inference import compose

    from relevance.serving.scorer import default_cache
    from relevance.weights import resolve_source

    cfg = compose("gemma3_270m", default_cache())
    return _cosine_row(resolve_source(cfg.backbone, default_cache()), train, views)


def zero_shot_e5(train, views, scratch) -> dict:
    """multilingual-e5-small, a multilingual embedding model, with its query:/passage: prefixes."""
    from relevance.model import packaged_e5
    from relevance.serving.scorer import default_cache

    location = packaged_e5.embedder_location(packaged_e5.HUB_ID, default_cache())
    return _cosine_row(location, train, views, "query: ", "passage: ")


def zero_shot_e5_margin(train, views, scratch) -> dict:
    from relevance.model import packaged_e5
    from relevance.serving.scorer import default_cache

    location = packaged_e5.embedder_location(packaged_e5.HUB_ID, default_cache())
    return _cosine_row(location, train, views, "query: ", "passage: ", margin=True)


TEACHERS: dict[int, tuple[Path, dict]] = {}  # seed -> (its store's folder, the teacher run's figures)


def teacher(seed: int, scratch: Path) -> tuple[Path, dict]:
    """offline_best trained on `seed` with its model logged, once per seed and invocation."""
    if seed not in TEACHERS:
        run_dir = scratch / f"teacher-{seed}"
        run_dir.mkdir()
        common = [*DATA, f"data.dir={need_taxonomy()}", f"seed={seed}"]
        TEACHERS[seed] = run_dir, run_train([*common, *BEST, "tracking.log_model=true"], run_dir)
    return TEACHERS[seed]


def served(run_id: str, views: dict) -> dict:
    """Seen/unseen F1 of each view as predict.py scores it with the run's logged model: its refit when it has one
    (else the fold mean), at the thresholds it decides by (matched-rate ones for unseen languages when its run
    says so). run_train left MLflow pointing at the run's store."""
    from relevance.serving.predict import load_scorer

    with tempfile.TemporaryDirectory() as download:
        scorer = load_scorer(run_id, download_to=download)
        figures = {}
        for view, rows in views.items():
            scores = scorer.predict_records(rows)
            figures |= _seen_unseen(rows, scores, scorer.row_thresholds(rows, scores), view, "_served")
    return figures


def harness(overrides: list[str], seed: int, scratch: Path, views: dict) -> dict:
    extra = {}
    if any(TEACHER in o for o in overrides):  # a distilled row: trained in its teacher's store
        run_dir, taught = teacher(seed, scratch)
        overrides = [o.replace(TEACHER, taught["run_id"]) for o in overrides]
        extra = {"teacher_minutes": taught["minutes"], "teacher_unseen": taught["dev_refit_unseen_f1_at_matched_rate"]}
    else:
        run_dir = scratch / f"run-{time.time_ns()}"
        run_dir.mkdir()
    logged = ["tracking.log_model=true"]  # the served model scores both views (figures `<view>_served_*`)
    found = run_train([*DATA, f"data.dir={need_taxonomy()}", f"seed={seed}", *logged, *overrides], run_dir)
    return {key: found[key] for key in FIGURES if key in found} | served(found["run_id"], views) | extra


def _cell(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def render(results: dict) -> str:
    names = list(KEYS.values()) + [name for name, _ in HARNESS_ROWS.values()]
    body = []
    for name in names:
        if name not in results:
            continue
        runs = list(results[name]["runs"].values()) if "runs" in results[name] else [results[name]]

        def cell(key, digits=3):
            return _cell([r.get(key) for r in runs], digits)

        body.append(
            [
                name,
                str(len(runs)),
                cell("oof_best_f1"),
                cell("dev_seen_f1_at_oof_threshold"),
                cell("dev_unseen_f1_at_oof_threshold"),
                cell("dev_unseen_f1_at_matched_rate"),
                cell("minutes", 1),
                cell("peak_mb", 0),
            ]
        )
    text = table(
        [
            "method",
            "seeds",
            "out-of-fold F1 (seen, best threshold)",
            "dev F1 seen",
            "dev F1 unseen de/it/pl",
            "dev F1 unseen, matched-rate thresholds",
            "minutes",
            "peak MB",
        ],
        body,
    )
    refit_rows = []
    for name in names:
        runs = list(results.get(name, {}).get("runs", {}).values())
        if runs and any("dev_refit_unseen_f1_at_oof_threshold" in r for r in runs):
            refit_rows.append(
                [
                    name,
                    _cell([r.get("dev_seen_f1_at_oof_threshold") for r in runs]),
                    _cell([r.get("dev_refit_seen_f1_at_oof_threshold") for r in runs]),
                    _cell([r.get("dev_refit_seen_f1_at_matched_threshold") for r in runs]),
                    _cell([r.get("dev_unseen_f1_at_oof_threshold") for r in runs]),
                    _cell([r.get("dev_refit_unseen_f1_at_oof_threshold") for r in runs]),
                    _cell([r.get("dev_refit_unseen_f1_at_matched_threshold") for r in runs]),
                    _cell([r.get("dev_refit_unseen_f1_at_matched_rate") for r in runs]),
                ]
            )
    if refit_rows:
        text += "\n\nFold ensemble against one model refit on all rows (train.refit=true), same runs:\n\n" + table(
            [
                "run",
                "seen: fold ensemble",
                "seen: refit (folds' threshold)",
                "seen: refit (rate-matched threshold)",
                "unseen: fold ensemble",
                "unseen: refit (folds' threshold)",
                "unseen: refit (rate-matched threshold)",
                "unseen: refit, matched-rate per language",
            ],
            refit_rows,
        )
    view_rows = []
    for name in names:
        entry = results.get(name, {})
        runs = list(entry["runs"].values()) if "runs" in entry else ([entry] if entry else [])
        runs = [r for r in runs if "user_seen_f1_at_oof_threshold" in r or "user_seen_f1_served" in r]
        if not runs:
            continue
        how = "served" if "user_seen_f1_served" in runs[0] else "at_oof_threshold"
        view_rows.append(
            [name, str(len(runs))]
            + [
                _cell([r.get(f"{view}_{group}_f1_{how}") for r in runs])
                for view in ("dev", "user")
                for group in ("seen", "unseen")
            ]
            + ["the served model" if how == "served" else "out-of-fold threshold"]
        )
    if view_rows:
        text += (
            "\n\nTwo views of the same dev pairs: category names as queries (plain) and the queries users type "
            "(user view: brands, attributes, sizes, typos, parent names, code switching; `dev_user_QC.txt`, "
            "data/user_queries.py):\n\n"
            + table(
                ["method", "seeds", "plain seen", "plain unseen", "user view seen", "user view unseen", "decided by"],
                view_rows,
            )
        )
    return text + (
        f"\n\n`data=taxonomy` with {SPEC.train_rows} training rows (en/es/fr/ja/pt, one positive path, "
        f"a sibling's and a random one per query), dev {SPEC.dev_rows_per_language} rows per language on "
        f"the {SPEC.heldout_share:.0%} of categories kept out of training; dev F1 at the threshold tuned "
        f"on the training rows' out-of-fold scores (matched-rate: unseen languages get their own score "
        f"quantile, `threshold.unseen=matched_rate`). Harness rows: `python train.py {' '.join(DATA)} "
        f"data.dir=... seed=S` plus the row's overrides (see `HARNESS_ROWS` in this script); "
        f"mean ± standard deviation over the seeds (numpy's, ddof 0: half the gap for two seeds); peak MB is "
        f"the training process's peak resident memory."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", help=f"rows: {', '.join([*KEYS, *HARNESS_ROWS])}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the harness rows")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "taxonomy_quality.json")
    parser.add_argument("--table-from", type=Path)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--redo", action="store_true", help="run the given seeds again, replacing their figures")
    parser.add_argument("--keep", type=Path, help="keep each run's MLflow store (and logged model) in this folder")
    args = parser.parse_args()
    if args.table_from:
        text = render(json.loads(args.table_from.read_text()))
    else:
        figures = Figures(args.json)
        results = figures.results
        wanted = chosen_rows(args.only, [*KEYS, *HARNESS_ROWS])
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            if args.keep:  # the runs' stores stay for a later look (their models, scores, curves)
                args.keep.mkdir(parents=True, exist_ok=True)
                scratch = Path(tempfile.mkdtemp(dir=args.keep))
            train, views = _files(scratch)
            for key in wanted:
                if key in KEYS:
                    started = time.perf_counter()
                    row = globals()[key](train, views, scratch)
                    row |= {"minutes": (time.perf_counter() - started) / 60, "peak_mb": peak_rss_mb()}
                    figures.put(results, KEYS[key], row, KEYS[key])
                    continue
                name, overrides = HARNESS_ROWS[key]
                runs = results.setdefault(name, {"overrides": overrides, "runs": {}})["runs"]
                figures.fill_seeds(
                    runs, args.seeds, lambda seed: harness(overrides, seed, scratch, views), name, redo=args.redo
                )
        text = render(results)
    print()
    print(text)
    if not args.no_write:
        write_section(
            "taxonomy-quality",
            "Quality on real multilingual data: the taxonomy benchmark",
            text,
            command=GATHERED_COMMAND,
        )


if __name__ == "__main__":
    main()
