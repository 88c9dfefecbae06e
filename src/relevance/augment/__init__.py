"""Record transforms between cleaning and splitting, chosen by the `augmentation` config group
(`augmentation=[translate,tags,...]`, composable; each selected file lands under `augmentation.<name>`).

Two kinds: text rewrites (translation concat, tags) change every row and are replayed by the served model; extra
rows (translation synthesis, hard negatives) exist only for training, each tied to the row it came from."""

from __future__ import annotations

from relevance.data.records import Record


def concat_mode(augmentation) -> bool:
    return bool(augmentation and augmentation.get("translate") and augmentation.translate.mode in ("concat", "both"))


def synthesize_mode(augmentation) -> bool:
    return bool(
        augmentation and augmentation.get("translate") and augmentation.translate.mode in ("synthesize", "both")
    )


def rewrite_text(records: list[Record], augmentation, translations=None) -> list[Record]:
    """The transforms that change a row's text. They run in training and again, from the logged model's copy of
    the options, at prediction time, so a served model sees inputs written exactly as in training."""
    if concat_mode(augmentation):
        from relevance.augment.translate import concat_pivot

        records = concat_pivot(records, augmentation.translate, translations)
    if augmentation and augmentation.get("tags"):
        from relevance.augment.tags import add_tags

        records = add_tags(records, augmentation.tags)
    return records
