"""Turn records into model inputs: a prompt string for decoders, a (query, target) pair for encoders.
Templates are data (the task config); this module only fills them."""

from __future__ import annotations

from relevance.errors import ConfigError
from relevance.records import Record


def check_template(template: str) -> None:
    try:
        template.format(query="q", target="t", language="en")
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(f"task.template {template!r} is not a valid template ({error}); "
                          f"use the fields {{query}}, {{target}} and {{language}} only.") from None


def format_inputs(records: list[Record], template: str, encoder: bool) -> list:
    """One model input per record, in order."""
    if encoder:
        return [(r.query, r.target) for r in records]
    return [template.format(query=r.query, target=r.target, language=r.language) for r in records]
