"""Record transforms between cleaning and splitting, chosen by the `augmentation` config group
(`augmentation=[tags,...]`, composable; each selected file lands under `augmentation.<name>`)."""

from __future__ import annotations

from relevance.records import Record


def rewrite_text(records: list[Record], augmentation) -> list[Record]:
    """The transforms that change a row's text. They run in training and again, from the logged model's copy of
    the options, at prediction time, so a served model sees inputs written exactly as in training."""
    if augmentation and augmentation.get("tags"):
        from relevance.augment.tags import add_tags

        records = add_tags(records, augmentation.tags)
    return records
