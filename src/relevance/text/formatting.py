"""Prompt templates are data (the task and head configs; heads.prompt_template picks a head's): here, checking a
template's fields and counting the tokens it adds. preprocess.Preprocessor fills them."""

from __future__ import annotations

from relevance.errors import ConfigError


def check_template(template: str) -> None:
    try:
        template.format(query="q", target="t", language="en")
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(
            f"task.template {template!r} is not a valid template ({error}); "
            f"use the fields {{query}}, {{target}} and {{language}} only."
        ) from None


def fixed_prompt_tokens(tokenizer, template: str, encoder: bool) -> int:
    """Tokens a template adds around the query and target, so `train.max_length` can budget the pair alone."""
    if encoder:
        return 0
    return len(tokenizer(template.format(query="", target="", language=""))["input_ids"])
