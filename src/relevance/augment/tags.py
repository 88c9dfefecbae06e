"""Language, hierarchy and attribute tags written into the text (DILAB's input enrichment).

Applied after cleaning (so text is already case-folded when `clean.lowercase` is on) and, through the logged model,
identically at prediction time."""

from __future__ import annotations

import re

from relevance.augment.base import Augmentation, register
from relevance.data.records import Record, category_levels
from relevance.tasks import TASKS

_SIZE = re.compile(
    r"\b(?:size\s+\w+|xxs|xs|xxl|xl|\d+(?:\.\d+)?\s?(?:ml|l|g|kg|cm|mm|m|w|mah|gb|tb|pcs|inch|\"))\b", re.IGNORECASE
)


def hierarchy_tags(path: str) -> str:
    """`food,grocery,flour, baking and cooking` -> `[D1] food [/D1] [D2] grocery [/D2] [D3] flour, baking ... [/D3]`."""
    return " ".join(f"[D{i}] {level} [/D{i}]" for i, level in enumerate(category_levels(path), start=1))


def attribute_tags(title: str, brands: list[str], colors: list[str]) -> str:
    """`[ATTR] brand: x, color: y, size: z` from rules over the title; empty when nothing is found."""
    words = re.findall(r"[\w-]+", title.lower())
    found = []
    brand = next((w for w in words if w in brands), None)
    if brand:
        found.append(f"brand: {brand}")
    color = next((w for w in words if w in colors), None)
    if color:
        found.append(f"color: {color}")
    size = _SIZE.search(title)
    if size:
        found.append(f"size: {size.group(0).lower()}")
    return f"[ATTR] {', '.join(found)}" if found else ""


def add_tags(records: list[Record], options) -> list[Record]:
    """Records with tagged text; `options` is the `augmentation.tags` config."""
    brands = {b.lower() for b in options.brands}
    colors = {c.lower() for c in options.colors}
    tagged = []
    for r in records:
        query = f"[LANG={r.language}] {r.query}" if options.language else r.query
        target = r.target
        path = TASKS[r.task].target_is_path
        if path and options.hierarchy:
            target = hierarchy_tags(target)
        if not path and options.attributes:
            attributes = attribute_tags(target, brands, colors)
            target = f"{target} {attributes}".strip()
        tagged.append(r.with_text(query, target))
    return tagged


@register
class Tags(Augmentation):
    """augmentation=[tags]: language, category-level and attribute tags written into every row's text."""

    name = "tags"
    order = 30

    def rewrites(self, options) -> bool:
        return True

    def rewrite(self, records, options, translations):
        return add_tags(records, options)
