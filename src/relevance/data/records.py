"""The validated record type shared by every stage, and the competition's languages and field limits (the tasks
themselves: relevance.tasks)."""

from __future__ import annotations

from dataclasses import dataclass, replace

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
