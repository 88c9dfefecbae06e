"""The validated record type shared by every stage, and the facts of the competition it encodes."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Task:
    """One competition task: the field its candidate text is in, its files, its languages, and the other task
    (TAPT's first stage trains on it). Joint is not a Task: it is a config made of both (see relevance.tasks)."""

    code: str
    target_field: str
    seen_languages: tuple[str, ...]  # labelled training rows exist in these
    unseen_languages: tuple[str, ...]  # only in dev/test
    other: str

    def file_name(self, which: str) -> str:
        """The competition's naming: train_QC.txt, dev_QI.txt, submit_QC.txt, ..."""
        return f"{which}_{self.code}.txt"


TASKS = {
    "QC": Task("QC", "category_path", ("en", "es", "fr", "ja", "ko", "pt"), ("ar", "de", "it", "pl"), other="QI"),
    "QI": Task(
        "QI", "item_title", ("en", "es", "fr", "ja", "ko", "pt", "th"), ("ar", "de", "it", "pl", "id", "vn"), other="QC"
    ),
}

ALL_LANGUAGES = ("en", "es", "fr", "ja", "ko", "pt", "th", "ar", "de", "it", "pl", "id", "vn")
# A query or target longer than this is cut here before tokenising (files) or refused (REST): train.max_length
# is 64 tokens by default, so no model reads this far, and a 10 MB field then costs no memory.
MAX_FIELD_CHARS = 10_000
# English names, for translation prompts.
LANGUAGE_NAMES = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "ja": "Japanese",
    "ko": "Korean",
    "pt": "Portuguese",
    "th": "Thai",
    "ar": "Arabic",
    "de": "German",
    "it": "Italian",
    "pl": "Polish",
    "id": "Indonesian",
    "vn": "Vietnamese",
}


@dataclass(frozen=True, slots=True)
class Record:
    """One query-candidate pair. `target` is the category path (QC) or item title (QI); `label` is None when
    unlabelled."""

    id: int
    task: str
    language: str
    query: str
    target: str
    label: int | None = None

    def with_text(self, query: str, target: str) -> Record:
        return replace(self, query=query, target=target)


def category_levels(path: str) -> list[str]:
    """Split a category path into levels.

    Levels are joined by a comma with no space; a level name may itself contain ", " (comma + space),
    as in `food,grocery,flour, baking and cooking,decorations`, so a bare comma split would be wrong.
    """
    levels: list[str] = []
    start = 0
    for i, char in enumerate(path):
        if char == "," and not path.startswith(" ", i + 1):
            levels.append(path[start:i])
            start = i + 1
    levels.append(path[start:])
    return [level.strip() for level in levels if level.strip()]


def category_prefix(path: str, depth: int) -> str:
    """The first `depth` levels of a category path, re-joined in the competition's style."""
    return ",".join(category_levels(path)[:depth])
