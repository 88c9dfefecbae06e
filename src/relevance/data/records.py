"""The validated record type shared by every stage, and the facts of the competition it encodes."""

from __future__ import annotations

from dataclasses import dataclass, replace

TASKS = ("QC", "QI")
# Which field holds the candidate text for each task.
TARGET_FIELD = {"QC": "category_path", "QI": "item_title"}

# Languages with labelled training rows in the competition, per task; the rest appear only in dev/test.
SEEN_LANGUAGES = {
    "QC": ("en", "es", "fr", "ja", "ko", "pt"),
    "QI": ("en", "es", "fr", "ja", "ko", "pt", "th"),
}
UNSEEN_LANGUAGES = {
    "QC": ("ar", "de", "it", "pl"),
    "QI": ("ar", "de", "it", "pl", "id", "vn"),
}
ALL_LANGUAGES = ("en", "es", "fr", "ja", "ko", "pt", "th", "ar", "de", "it", "pl", "id", "vn")
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
