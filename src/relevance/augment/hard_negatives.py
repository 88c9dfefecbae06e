"""Semantic hard negatives (Yin et al., sec. 3.2.2): for sampled positives, the target is replaced by one of its
neighbours ranked within a window (default 20th-50th most similar) among all targets, labelled 0; optionally the
query is translated into another language first. Neighbours of a target that are known positives for the same
query are never used. The new rows are training-only extras tied to the positive they came from."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from relevance.augment.base import Augmentation, check_count, register
from relevance.data.records import Record
from relevance.errors import ConfigError

log = logging.getLogger(__name__)
EXACT_LIMIT = 20000  # up to this many targets, neighbours are exact; above, a faiss HNSW index


def _tfidf(texts: list[str]) -> np.ndarray:
    """Character 2-5-gram TF-IDF (language-agnostic, offline), reduced to 256 dense dimensions when large."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True).fit_transform(texts)
    if len(texts) > EXACT_LIMIT or matrix.shape[1] > 4096:
        matrix = TruncatedSVD(min(256, min(matrix.shape) - 1), random_state=0).fit_transform(matrix)
    else:
        matrix = matrix.toarray()
    return matrix.astype(np.float32)


def _hub_embeddings(texts: list[str], options, location: str) -> np.ndarray:
    """A hub embedding model (multilingual-e5, Qwen3-Embedding): mean or last-token pooling."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    from relevance.runtime import inference_device

    device = inference_device()
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location, dtype=torch.float32).to(device).eval()
    if options.pooling == "last":
        tokenizer.padding_side = "left"  # the last position is every row's last real token
    out = []
    for start in tqdm(range(0, len(texts), options.batch_size), desc="embedding targets", leave=False):
        batch = tokenizer(
            [options.prefix + t for t in texts[start : start + options.batch_size]],
            padding=True,
            truncation=True,
            max_length=options.max_length,
            return_tensors="pt",
        ).to(device)
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        if options.pooling == "last":
            pooled = hidden[:, -1]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
        out.append(pooled.float().cpu().numpy())
    return np.concatenate(out)


def embed(texts: list[str], options, cache: Path) -> np.ndarray:
    """L2-normalised embeddings; a hub model's are cached on disk keyed by model and texts."""
    if options.embedder == "tfidf":
        vectors = _tfidf(texts)
    else:
        key = hashlib.sha256("\n".join([options.embedder, options.pooling, options.prefix, *texts]).encode())
        path = cache / "embeddings" / f"{key.hexdigest()[:24]}.npy"
        if path.is_file():
            vectors = np.load(path)
        else:
            from relevance.model.packaged_e5 import embedder_location

            vectors = _hub_embeddings(texts, options, embedder_location(options.embedder, cache))
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vectors)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def ranked_neighbours(vectors: np.ndarray, depth: int) -> np.ndarray:
    """Row i: the `depth` most similar other rows, most similar first (exact, or HNSW above EXACT_LIMIT)."""
    n = len(vectors)
    depth = min(depth, n - 1)
    if n > EXACT_LIMIT:
        import faiss

        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.add(vectors)
        index.hnsw.efSearch = max(64, 2 * depth)
        _, found = index.search(vectors, depth + 1)
        return np.array([[j for j in row if j != i and j >= 0][:depth] for i, row in enumerate(found)])
    ranked = np.empty((n, depth), dtype=int)
    for start in range(0, n, 2048):
        similarity = vectors[start : start + 2048] @ vectors.T
        for row, i in enumerate(range(start, min(start + 2048, n))):
            similarity[row, i] = -np.inf
        top = np.argpartition(-similarity, depth - 1, axis=1)[:, :depth]
        order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1)
        ranked[start : start + len(top)] = np.take_along_axis(top, order, axis=1)
    return ranked


def hard_negatives(
    records: list[Record], options, translations, cache: Path, seed: int
) -> tuple[list[Record], np.ndarray]:
    """Extra label-0 rows and the index of the positive each came from."""
    rng = np.random.default_rng(seed)
    targets = sorted({r.target for r in records})
    position = {t: i for i, t in enumerate(targets)}
    low, high = options.window
    neighbours = ranked_neighbours(embed(targets, options, cache), high)
    positive_pairs = {(r.query, r.target) for r in records if r.label == 1}
    positives = [i for i, r in enumerate(records) if r.label == 1 and r.query]
    chosen = np.sort(rng.choice(positives, min(options.rows, len(positives)), replace=False)) if positives else []
    planned = []
    for i in chosen:
        row = neighbours[position[records[i].target]]
        window = row[min(low, max(len(row) - 1, 0)) : high] if len(row) else row
        candidates = [targets[j] for j in window if (records[i].query, targets[j]) not in positive_pairs]
        if candidates:
            language = (
                str(rng.choice(list(options.translate_to))) if options.get("translate_to") else records[i].language
            )
            planned.append((int(i), language, candidates[rng.integers(len(candidates))]))
    requests = [(records[i].query, records[i].language, lang) for i, lang, _ in planned if lang != records[i].language]
    table = translations(requests) if requests else {}
    extras = [
        Record(
            id=-(n + 1),
            task=records[i].task,
            language=lang,
            query=table.get((records[i].query, records[i].language, lang), records[i].query),
            target=target,
            label=0,
        )
        for n, (i, lang, target) in enumerate(planned)
    ]
    log.info("hard negatives: %d rows from %d sampled positives (%d targets)", len(extras), len(chosen), len(targets))
    return extras, np.array([i for i, _, _ in planned], dtype=int)


@register
class HardNegatives(Augmentation):
    """augmentation=[hard_negatives]: label-0 rows pairing a positive's query with a near-miss target."""

    name = "hard_negatives"
    order = 20
    count_metric = "rows_hard_negatives"
    seed_offset = 1

    def adds_rows(self, options) -> bool:
        return True

    def extra_rows(self, records, options, translations, cache, seed):
        return hard_negatives(records, options, translations, Path(cache), seed)

    def needs_translator(self, options) -> bool:
        return bool(options.get("translate_to"))

    def check(self, options) -> None:
        from relevance.model import packaged_e5
        from relevance.model.hub import hub_model_available

        check_count(options.rows, "augmentation.hard_negatives.rows")
        window = list(options.window)
        if len(window) != 2 or not all(isinstance(w, int) for w in window) or not 0 <= window[0] < window[1]:
            raise ConfigError(
                f"augmentation.hard_negatives.window={window} must be two ranks [low, high] with "
                f"0 <= low < high, e.g. [20, 50]."
            )
        packaged = options.embedder == packaged_e5.HUB_ID and packaged_e5.installed()
        if options.embedder != "tfidf" and not packaged and not hub_model_available(options.embedder):
            raise ConfigError(
                f"augmentation.hard_negatives.embedder={options.embedder} is not on this machine "
                f"and the hub cannot be reached; use embedder=tfidf offline, or download it first."
            )
