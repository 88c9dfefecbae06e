"""Synthetic demo data in the competition's exact file format.

It exercises the whole pipeline offline: both tasks, train/dev/test, all 13 language codes with the competition's
seen/unseen split, category paths with ", " inside levels, branded titles, sibling-category hard negatives, noisy
queries and a little label noise. It is synthetic: scores on it measure the pipeline, nothing about real data.
Unlike the real dev files, the demo dev files carry labels, so unseen-language F1 can be shown. A translations file
(every query into every language, and back to English) lets both translation augmentations run offline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from relevance.atomic import build_folder
from relevance.data.reader import write_records
from relevance.data.records import ALL_LANGUAGES, Record, category_levels
from relevance.data.translations_file import write_translations
from relevance.synthetic.lexicon import BRANDS, COLORS, concepts
from relevance.tasks import TASKS

GENERATOR_VERSION = 3  # bump whenever the files a spec produces change, so stale caches are not reused
TRANSLATIONS_FILE = "translations.jsonl"
_LATIN = {"en", "es", "fr", "pt", "de", "it", "pl", "id", "vn"}


@dataclass(frozen=True)
class DemoSpec:
    """Sizes and noise of one generated data set; the same spec and seed always give the same files."""

    train_rows: int = 600
    dev_rows: int = 200
    test_rows: int = 200
    positive_rate: float = 0.67
    hard_negative_rate: float = 0.6
    label_noise: float = 0.03
    queries_per_language: int = 40
    translation_error_rate: float = 0.1
    seed: int = 13

    def folder_name(self) -> str:
        return (
            f"demo{GENERATOR_VERSION}-s{self.seed}-tr{self.train_rows}-dv{self.dev_rows}-te{self.test_rows}"
            f"-p{self.positive_rate}-h{self.hard_negative_rate}-n{self.label_noise}-q{self.queries_per_language}"
            f"-t{self.translation_error_rate}"
        )


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[:i] + word[i + 1 :]  # dropped letter
    if kind < 0.8:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]  # swapped letters
    return word[:i] + word[i] + word[i:]  # doubled letter


def _noisy_query(rng: random.Random, concept: dict, language: str, brand: str | None) -> tuple[str, str | None]:
    """A shopper's query: the product word in the row's language, sometimes in English (code-mixing),
    sometimes with a typo, an abbreviation, a brand, a colour or a stray symbol."""
    word = concept["words"][language]
    if language != "en" and rng.random() < 0.1:
        word = concept["words"]["en"]  # code-mixed: English product word in a foreign-language query
    parts = word.split()
    if language in _LATIN and rng.random() < 0.15:
        k = rng.randrange(len(parts))
        parts[k] = _typo(rng, parts[k])
    if language in _LATIN and len(parts) > 1 and rng.random() < 0.1:
        parts = [parts[0][:3]] + parts[1:]  # abbreviation of the first word
    if brand is not None:
        parts.insert(0 if rng.random() < 0.5 else len(parts), brand.lower() if rng.random() < 0.5 else brand)
    color = rng.choice(COLORS) if rng.random() < 0.2 else None
    if color:
        parts.append(color)
    query = " ".join(parts)
    if rng.random() < 0.04:
        query = rng.choice("%-#*") + query
    return query, color


def _rendition(concept: dict, language: str, brand: str | None, color: str | None) -> str:
    """What a good translator makes of a query: the product word in `language`, brand and colour kept."""
    return " ".join(p for p in (brand, concept["words"][language], color) if p)


def _title(rng: random.Random, concept: dict, brand: str) -> str:
    attributes = rng.sample(concept["attributes"], k=rng.randint(1, len(concept["attributes"])))
    pieces = [brand, *attributes[:1], concept["noun"], *attributes[1:]]
    if rng.random() < 0.5:
        pieces.append(rng.choice(COLORS).title())
    return " ".join(pieces)


class _Generator:
    def __init__(self, spec: DemoSpec):
        self.spec = spec
        self.concepts = concepts()
        self.queries: list[tuple[str, int, str | None, str | None, str]] = []
        self.siblings = {}
        for i, concept in enumerate(self.concepts):
            parent = category_levels(concept["path"])[:-1]
            self.siblings[i] = [
                j for j, other in enumerate(self.concepts) if j != i and category_levels(other["path"])[:-1] == parent
            ]

    def _negative_concept(self, rng: random.Random, index: int) -> int:
        if self.siblings[index] and rng.random() < self.spec.hard_negative_rate:
            return rng.choice(self.siblings[index])
        return rng.choice([j for j in range(len(self.concepts)) if j != index])

    def _query_pool(self, rng: random.Random, language: str) -> list[tuple[int, str | None, str]]:
        """Queries recur across rows, as in real logs: (concept index, brand, query text)."""
        pool = []
        for _ in range(self.spec.queries_per_language):
            index = rng.randrange(len(self.concepts))
            brand = rng.choice(BRANDS) if rng.random() < 0.3 else None
            query, color = _noisy_query(rng, self.concepts[index], language, brand)
            pool.append((index, brand, query))
            self.queries.append((language, index, brand, color, query))
        return pool

    def translations(self) -> dict[tuple[str, str, str], str]:
        """Every generated query into every other language, and each of those into English: a stand-in for a
        machine translator, with `translation_error_rate` of the outputs naming a wrong product."""
        rng = random.Random(self.spec.seed * 7919)
        table = {}
        for language, index, brand, color, query in self.queries:
            for target in ALL_LANGUAGES:
                if target == language:
                    continue
                concept = self.concepts[index]
                if rng.random() < self.spec.translation_error_rate:
                    concept = self.concepts[rng.randrange(len(self.concepts))]
                table[(query, language, target)] = _rendition(concept, target, brand, color)
                if target != "en":  # and back to English, so synthesized rows can be concatenated too
                    table[(_rendition(concept, target, brand, color), target, "en")] = _rendition(
                        concept, "en", brand, color
                    )
        return table

    def rows(self, task: str, languages: tuple[str, ...], n_rows: int, seed: int, labelled: bool) -> list[Record]:
        rng = random.Random(seed)
        pools = {language: self._query_pool(rng, language) for language in languages}
        records = []
        for row_id in range(1, n_rows + 1):
            language = languages[(row_id - 1) % len(languages)]
            index, brand, query = rng.choice(pools[language])
            label = int(rng.random() < self.spec.positive_rate)
            target_index = index if label else self._negative_concept(rng, index)
            concept = self.concepts[target_index]
            if task == "QC":
                levels = category_levels(concept["path"])
                depth = len(levels) if (not label or rng.random() < 0.75) else rng.randint(2, len(levels))
                target = ",".join(levels[:depth])  # a relevant query also matches an ancestor path
            else:
                title_brand = brand if (brand and label and rng.random() < 0.8) else rng.choice(BRANDS)
                target = _title(rng, concept, title_brand)
            if rng.random() < self.spec.label_noise:
                label = 1 - label
            records.append(
                Record(
                    id=row_id,
                    task=task,
                    language=language,
                    query=query,
                    target=target,
                    label=label if labelled else None,
                )
            )
        return records


def generate_demo(folder: str | Path, spec: DemoSpec = DemoSpec()) -> Path:
    """Train/dev/test files for both tasks in `folder`, written once (the folder appears whole or not at all)."""

    def build(staging: Path) -> None:
        generator = _Generator(spec)
        for t, task in enumerate(("QC", "QI")):
            seen, unseen = TASKS[task].seen_languages, TASKS[task].unseen_languages
            sizes = {
                "train": (seen, spec.train_rows, True),
                "dev": (seen + unseen, spec.dev_rows, True),
                "test": (seen + unseen, spec.test_rows, False),
            }
            for s, (split, (languages, n_rows, labelled)) in enumerate(sizes.items()):
                records = generator.rows(task, languages, n_rows, seed=spec.seed * 100 + t * 10 + s, labelled=labelled)
                write_records(staging / TASKS[task].file_name(split), records)
        write_translations(staging / TRANSLATIONS_FILE, generator.translations())

    return build_folder(Path(folder), build)
