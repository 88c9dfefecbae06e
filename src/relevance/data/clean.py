"""Text cleaning: Unicode and whitespace normalisation, optional case folding, empty queries dropped and counted."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from relevance.data.records import Record

_SPACES = re.compile(r"\s+")


def normalize_text(text: str, lowercase: bool = True) -> str:
    """NFKC (full-width forms, ligatures), collapsed whitespace, optionally lower case."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()
    return text.lower() if lowercase else text


@dataclass
class CleanReport:
    kept: int = 0
    dropped_empty_query: int = 0
    dropped_ids: list[int] = field(default_factory=list)


def clean_records(
    records: list[Record], lowercase: bool = True, drop_empty_queries: bool = True
) -> tuple[list[Record], CleanReport]:
    """Normalise query and target text. Rows whose query is empty after cleaning are dropped (for training)
    or kept as empty (for prediction, where every id must get an answer) and counted either way."""
    report = CleanReport()
    cleaned: list[Record] = []
    for record in records:
        query = normalize_text(record.query, lowercase)
        if not query:
            report.dropped_empty_query += 1
            report.dropped_ids.append(record.id)
            if drop_empty_queries:
                continue
        cleaned.append(record.with_text(query, normalize_text(record.target, lowercase)))
    report.kept = len(cleaned)
    return cleaned, report
