"""A real multilingual query-category set built from the Google Product Taxonomy (read at run time, never shipped).

The taxonomy's files (`taxonomy-with-ids.<locale>.txt`, lines `ID - Level 1 > Level 2 > Leaf`) name the same
categories in several languages, aligned by id. From them:

- QC rows: the query is a category's localized leaf name, the candidate an English category path in the
  competition's style (levels joined by ","); the true path is positive, a sibling's path (same parent: the hard
  case) and a random path from another top level are negative, so 1 row in 3 is positive (all-positive F1 0.5).
- Training rows use the training languages and 80% of the categories; dev rows (labelled) use the other 20% of
  the categories in every language, so dev measures new categories in seen and in unseen languages alike.
- QI rows: the same kind of queries against English leaf names, a title-like short text; train_QI.txt (for task-
  adaptive pre-training and task=qi) on the training categories and languages, dev_QI.txt (and its users' view,
  dev_user_QI.txt) on the held-out categories in every language, drawn after every QC file so those stay as they were.
- translations.jsonl: each localized leaf name's English name, and each training query's name in the unseen
  languages, from the taxonomy's alignment (an oracle stand-in for machine translation, for augmentation=[translate]
  with translator=file: concat reads the first, synthesize the second). Only training categories get the unseen
  languages' names, so dev's held-out categories stay unseen in every language.
- dev_user_QC.txt: the dev rows with each query written as a shopper would type it (brands, attributes, sizes,
  typos, the parent category's name, code switching: data/user_queries.py), the same pairs and labels.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from relevance.atomic import build_folder
from relevance.data.reader import write_records
from relevance.data.records import Record
from relevance.data.translations_file import write_translations
from relevance.data.user_queries import user_view
from relevance.errors import ConfigError, DataError
from relevance.synthetic.demo import TRANSLATIONS_FILE
from relevance.tasks import TASKS

GENERATOR_VERSION = 4  # bump whenever the files a spec produces change, so stale caches are not reused
LOCALES = {
    "en": "en-US",
    "es": "es-ES",
    "fr": "fr-FR",
    "ja": "ja-JP",
    "pt": "pt-BR",
    "de": "de-DE",
    "it": "it-IT",
    "pl": "pl-PL",
}
_LINE = re.compile(r"^(\d+)\s+-\s+(.+)$")


@dataclass(frozen=True)
class TaxonomySpec:
    """Which languages train and evaluate, and how many rows; the same spec and seed always give the same files."""

    train_languages: tuple[str, ...] = ("en", "es", "fr", "ja", "pt")
    eval_languages: tuple[str, ...] = ("de", "it", "pl")
    train_rows: int = 3000
    dev_rows_per_language: int = 150
    qi_rows: int = 1500
    heldout_share: float = 0.2
    min_depth: int = 2
    seed: int = 13
    languages: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "train_languages", tuple(self.train_languages))
        object.__setattr__(self, "eval_languages", tuple(self.eval_languages))
        object.__setattr__(
            self,
            "languages",
            self.train_languages
            + tuple(language for language in self.eval_languages if language not in self.train_languages),
        )
        unknown = [language for language in self.languages if language not in LOCALES]
        if unknown:
            raise ConfigError(
                f"data.taxonomy languages {unknown} have no taxonomy file here; choose from {', '.join(LOCALES)}."
            )

    def folder_name(self) -> str:
        return (
            f"taxonomy{GENERATOR_VERSION}-s{self.seed}-{''.join(self.train_languages)}-"
            f"{''.join(self.eval_languages)}"
            f"-tr{self.train_rows}-dv{self.dev_rows_per_language}-qi{self.qi_rows}-h{self.heldout_share}"
            f"-d{self.min_depth}"
        )


def read_taxonomy(path: Path) -> dict[int, list[str]]:
    """id -> levels of one locale's file; a malformed line names the file and line."""
    categories = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE.match(line.strip())
        if not match:
            raise DataError(path, number, "expected `ID - Level 1 > Level 2 > ...`, the taxonomy's format.")
        categories[int(match.group(1))] = [level.strip() for level in match.group(2).split(" > ")]
    return categories


def _held_out(category: int, share: float) -> bool:
    """A stable per-id coin, so the held-out categories do not depend on the row counts."""
    digest = hashlib.sha256(str(category).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


class _Taxonomy:
    def __init__(self, folder: Path, spec: TaxonomySpec):
        self.spec = spec
        tables = {}
        for language in spec.languages:
            path = folder / f"taxonomy-with-ids.{LOCALES[language]}.txt"
            if not path.is_file():
                raise ConfigError(
                    f"data.dir={folder} has no {path.name}; point data.dir at the folder holding the "
                    f"Google Product Taxonomy files (taxonomy-with-ids.<locale>.txt)."
                )
            tables[language] = read_taxonomy(path)
        english = tables.get("en") or read_taxonomy(folder / f"taxonomy-with-ids.{LOCALES['en']}.txt")
        shared = set(english).intersection(*(set(t) for t in tables.values()))
        self.names = tables
        self.english = english
        by_path = {tuple(levels): category for category, levels in english.items() if category in shared}
        self.parent = {c: by_path.get(tuple(english[c][:-1])) for c in shared}
        self.children: dict[int | None, list[int]] = {}
        for category in sorted(shared):
            self.children.setdefault(self.parent[category], []).append(category)
        eligible = sorted(c for c in shared if len(english[c]) >= spec.min_depth)
        self.train_ids = [c for c in eligible if not _held_out(c, spec.heldout_share)]
        self.dev_ids = [c for c in eligible if _held_out(c, spec.heldout_share)]
        self.all_ids = sorted(shared)
        self.translations: dict[tuple[str, str, str], str] = {}  # filled by rows(): each query's English name
        self.parents: dict[tuple[str, str], str | None] = {}  # filled by rows(): its parent's name, same language

    def path(self, category: int) -> str:
        return ",".join(self.english[category])

    def negatives(self, rng: random.Random, category: int) -> list[int]:
        """A sibling (same parent; else a cousin under the same top level) and a category from another top level."""
        leaf, top = self.english[category][-1], self.english[category][0]
        siblings = [c for c in self.children.get(self.parent[category], []) if self.english[c][-1] != leaf]
        if not siblings:
            siblings = [c for c in self.all_ids if self.english[c][0] == top and self.english[c][-1] != leaf]
        other = [c for c in self.all_ids if self.english[c][0] != top and self.english[c][-1] != leaf]
        return [rng.choice(siblings), rng.choice(other)]

    def rows(
        self, task: str, ids: list[int], languages: tuple[str, ...], n_queries: int, seed: int, into=()
    ) -> list[Record]:
        """Each query's rows; its English name goes to the translations, and its name in each of `into` too."""
        rng = random.Random(seed)
        records = []
        for q in range(n_queries):
            language = languages[q % len(languages)]
            category = rng.choice(ids)
            query = self.names[language][category][-1]
            if language != "en":
                self.translations[(query, language, "en")] = self.english[category][-1]
            for other in into:
                if other != language:
                    self.translations.setdefault((query, language, other), self.names[other][category][-1])
            levels = self.names[language][category]
            self.parents[(language, query)] = levels[-2] if len(levels) > 1 else None
            for label, candidate in [(1, category)] + [(0, c) for c in self.negatives(rng, category)]:
                target = self.path(candidate) if task == "QC" else self.english[candidate][-1]
                records.append(
                    Record(id=len(records) + 1, task=task, language=language, query=query, target=target, label=label)
                )
        return records


def generate_taxonomy(source: Path, folder: Path, spec: TaxonomySpec) -> Path:
    """train/dev/test_QC.txt, dev_user_QC.txt, train/dev/test_QI.txt, dev_user_QI.txt and translations.jsonl in
    `folder`, written once (whole or not at all)."""
    source = Path(source).expanduser()
    if not source.is_dir():
        raise ConfigError(
            f"data.dir={source} is not a folder; point it at the Google Product Taxonomy files "
            f"(taxonomy-with-ids.<locale>.txt)."
        )
    taxonomy = _Taxonomy(source, spec)

    def build(staging: Path) -> None:
        unseen = spec.eval_languages  # training queries' names in them: what translation synthesis asks for
        train = taxonomy.rows("QC", taxonomy.train_ids, spec.train_languages, spec.train_rows // 3, spec.seed, unseen)
        dev = taxonomy.rows(
            "QC", taxonomy.dev_ids, spec.languages, spec.dev_rows_per_language * len(spec.languages) // 3, spec.seed + 1
        )
        qi = taxonomy.rows("QI", taxonomy.train_ids, spec.train_languages, spec.qi_rows // 3, spec.seed + 2, unseen)
        write_records(staging / TASKS["QC"].file_name("train"), train)
        write_records(staging / TASKS["QC"].file_name("dev"), dev)
        write_records(staging / TASKS["QC"].file_name("dev_user"), user_view(dev, taxonomy.parents, spec.seed))
        write_records(
            staging / TASKS["QC"].file_name("test"), [Record(r.id, r.task, r.language, r.query, r.target) for r in dev]
        )
        write_records(staging / TASKS["QI"].file_name("train"), qi)
        # QI's dev rows come last with their own seed, and a name already translated keeps its translation, so the
        # QC files and their translations are those of a spec without them (version 2).
        known = dict(taxonomy.translations)
        dev_qi = taxonomy.rows(
            "QI", taxonomy.dev_ids, spec.languages, spec.dev_rows_per_language * len(spec.languages) // 3, spec.seed + 3
        )
        write_records(staging / TASKS["QI"].file_name("dev"), dev_qi)
        write_records(staging / TASKS["QI"].file_name("dev_user"), user_view(dev_qi, taxonomy.parents, spec.seed))
        write_records(
            staging / TASKS["QI"].file_name("test"),
            [Record(r.id, r.task, r.language, r.query, r.target) for r in dev_qi],
        )
        write_translations(staging / TRANSLATIONS_FILE, taxonomy.translations | known)

    return build_folder(Path(folder), build)
