"""Turn records into model inputs: a prompt string for decoders, a (query, target) pair for encoders.
Templates are data (the task and head configs); this module only assembles and fills them."""

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


def format_by_task(records: list[Record], templates: dict[str, str], encoder: bool) -> list:
    """Like format_inputs, each row with its own task's template (task=joint mixes QC and QI rows)."""
    if encoder:
        return [(r.query, r.target) for r in records]
    return [templates[r.task].format(query=r.query, target=r.target, language=r.language) for r in records]


def prompt_template(task, head, backbone) -> str:
    """The per-row template for this task, head and backbone, still holding {query}, {target} and {language}.

    The classifier reads the task template as is. The yes/no head wraps it in an instruction: Alpaca-style for base
    models, the family's chat format for instruct models, ending where the answer token goes."""
    if head.name != "yes_no":
        return task.template
    if backbone.prompt_style == "alpaca":
        style = head.styles.alpaca
    elif backbone.prompt_style == "chat":
        if backbone.family not in head.styles.chat:
            raise ConfigError(f"head.styles.chat has no template for family {backbone.family!r} "
                              f"(backbone={backbone.name}); add one or set backbone.prompt_style=alpaca.")
        style = head.styles.chat[backbone.family]
    else:
        raise ConfigError(f"head=yes_no needs backbone.prompt_style alpaca or chat; backbone={backbone.name} has "
                          f"{backbone.prompt_style!r}.")
    instruction = head.instruction.replace("{target_name}", task.target_name)
    return style.replace("{instruction}", instruction).replace("{input}", task.template)


def fixed_prompt_tokens(tokenizer, template: str, encoder: bool) -> int:
    """Tokens a template adds around the query and target, so `train.max_length` can budget the pair alone."""
    if encoder:
        return 0
    return len(tokenizer(template.format(query="", target="", language=""))["input_ids"])
