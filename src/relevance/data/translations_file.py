"""The translations file format: one JSON object per line with text, source_language, target_language and
translation. The generated data sets write one (the taxonomy's aligned names, the demo's lexicon); translator=file
reads it."""

from __future__ import annotations

import json
from pathlib import Path

from relevance.data.clean import normalize_text
from relevance.data.reader import json_lines
from relevance.errors import DataError

Request = tuple[str, str, str]  # (text, source language, target language)
FILE_FIELDS = ("text", "source_language", "target_language", "translation")


def read_translations(path: str | Path, lowercase: bool) -> dict[Request, str]:
    """A translations file: one JSON object per line with text, source_language, target_language, translation.
    Text is normalised as training rows are (clean.lowercase), so lookups match cleaned queries."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            path,
            None,
            "translations file not found; set translator.path to a JSON Lines file with "
            f"{', '.join(FILE_FIELDS)} on each line.",
        )
    table = {}
    for number, row in json_lines(path):
        if not isinstance(row, dict) or any(not isinstance(row.get(k), str) for k in FILE_FIELDS):
            raise DataError(path, number, f"each line needs the string fields {', '.join(FILE_FIELDS)}.")
        key = (normalize_text(row["text"], lowercase), row["source_language"], row["target_language"])
        table[key] = normalize_text(row["translation"], lowercase)
    return table


def write_translations(path: str | Path, rows: dict[Request, str]) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for (text, source, target), translation in rows.items():
            handle.write(
                json.dumps(dict(zip(FILE_FIELDS, (text, source, target, translation))), ensure_ascii=False) + "\n"
            )
