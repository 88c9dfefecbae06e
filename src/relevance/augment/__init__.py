"""Record transforms between cleaning and splitting, chosen by the `augmentation` config group
(`augmentation=[translate,tags,...]`, composable; each selected file lands under `augmentation.<name>`).

Each is one registered `Augmentation` (augment/base.py) in a module of this package, plus its YAML file. Two kinds of
work: text rewrites (translation concat, tags) change every row and are replayed by the served model; extra rows
(translation synthesis, hard negatives) exist only for training, each tied to the row it came from."""

from __future__ import annotations

import importlib
import pkgutil

from relevance.augment.base import AUGMENTATIONS, Augmentation, chosen
from relevance.data.records import Record

for _module in pkgutil.iter_modules(__path__):  # every module of the package registers its augmentation
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["AUGMENTATIONS", "Augmentation", "chosen", "needs_translations", "rewrite_text"]


def needs_translations(augmentation) -> bool:
    """Whether the text rewrites the served model replays call a translator (translation concat)."""
    return any(step.rewrites(options) and step.needs_translator(options) for step, options in chosen(augmentation))


def rewrite_text(records: list[Record], augmentation, translations=None) -> list[Record]:
    """The transforms that change a row's text. They run in training and again, from the logged model's copy of
    the options, at prediction time, so a served model sees inputs written exactly as in training."""
    for step, options in chosen(augmentation):
        if step.rewrites(options):
            records = step.rewrite(records, options, translations)
    return records
