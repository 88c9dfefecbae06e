"""Translation augmentation, given a translations function (relevance.text.translation.Translations).

concat (DcuRAGONS): the query becomes `original - English translation`, in training and at prediction time.
synthesize (Yin et al., Tredence): training rows are copied into the languages missing from training, the query
translated, target and label kept. The copies are extra training rows tied to the row they came from, so they
only ever train the folds in which that row trains (no leak into a held-out fold)."""

from __future__ import annotations

import numpy as np

from relevance.augment.base import Augmentation, check_count, register
from relevance.data.records import Record
from relevance.errors import ConfigError
from relevance.tasks import TASKS


def concat_pivot(records: list[Record], options, translations) -> list[Record]:
    """`query - translation` for rows not already in the pivot language."""
    pivot = options.pivot
    requests = [(r.query, r.language, pivot) for r in records if r.language != pivot and r.query]
    table = translations(requests)
    return [
        r.with_text(f"{r.query}{options.separator}{table[(r.query, r.language, pivot)]}", r.target)
        if r.language != pivot and r.query
        else r
        for r in records
    ]


def synthesis_languages(options, task: str) -> list[str]:
    return list(options.languages) if options.get("languages") else list(TASKS[task].unseen_languages)


def synthesize(records: list[Record], options, translations, seed: int) -> tuple[list[Record], np.ndarray]:
    """Extra rows in each missing language, `options.rows_per_language` each, drawn without replacement from the
    rows of other languages; returns them and the index of the row each came from."""
    rng = np.random.default_rng(seed)
    task = records[0].task
    plan = []
    for language in synthesis_languages(options, task):
        candidates = [i for i, r in enumerate(records) if r.language != language and r.query]
        take = min(options.rows_per_language, len(candidates))
        plan += [(int(i), language) for i in np.sort(rng.choice(candidates, take, replace=False))]
    table = translations([(records[i].query, records[i].language, language) for i, language in plan])
    extras = [
        Record(
            id=-(n + 1),
            task=task,
            language=language,
            query=table[(records[i].query, records[i].language, language)],
            target=records[i].target,
            label=records[i].label,
        )
        for n, (i, language) in enumerate(plan)
    ]
    return extras, np.array([i for i, _ in plan], dtype=int)


MODES = ("concat", "synthesize", "both")


@register
class Translate(Augmentation):
    """augmentation=[translate]: translation concat (a rewrite: `query - English`) and/or synthesis (extra rows in
    the languages training lacks, which train in their source row's folds)."""

    name = "translate"
    order = 10
    count_metric = "rows_synthesized"
    extra_rows_follow_source = True

    def rewrites(self, options) -> bool:
        return options.mode in ("concat", "both")

    def rewrite(self, records, options, translations):
        return concat_pivot(records, options, translations)

    def adds_rows(self, options) -> bool:
        return options.mode in ("synthesize", "both")

    def extra_rows(self, records, options, translations, cache, seed):
        return synthesize(records, options, translations, seed)

    def needs_translator(self, options) -> bool:
        return True

    def check(self, options) -> None:
        if options.mode not in MODES:
            raise ConfigError(
                f"augmentation.translate.mode={options.mode!r} is not known; use concat, synthesize or both."
            )
        if options.mode != "concat":
            check_count(options.rows_per_language, "augmentation.translate.rows_per_language")
