"""Raw rows to model inputs: the one path that training, TAPT, dev scoring and the served model all take, so what
a served model tokenises is written exactly as in training.

clean (Unicode, whitespace, case) -> rewrite (translation concat, tags: `augment.rewrite_text`) -> format (the
task's prompt, or a (query, target) pair for encoders)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from relevance.augment import needs_translations, rewrite_text
from relevance.data.clean import CleanReport, clean_records
from relevance.data.records import Record, category_levels
from relevance.tasks import TASKS

CATEGORY_ORDERS = ("root_first", "leaf_first")


class Preprocessor:
    """`templates` maps task code -> prompt template (one entry, or QC and QI for a joint model). `translations`
    is the run's Translations; or `make_translations` makes it when first needed (serving loads a translator only
    for translation concat). A model bundle keeps it as one field (`to_dict`), and the served model rebuilds it
    from that field (`from_dict`)."""

    SAVED = {  # what `to_dict` writes, and the type the bundle checks each entry against
        "templates": dict[str, str],
        "encoder": bool,
        "lowercase": bool,
        "augmentation": dict,
        "translator": dict,
        "category_order": str,
    }

    def __init__(
        self,
        templates: dict[str, str],
        encoder: bool,
        lowercase: bool,
        augmentation,
        translations=None,
        make_translations: Callable | None = None,
        category_order: str = "root_first",
        translator: dict | None = None,
    ):
        self.templates, self.encoder, self.lowercase = dict(templates), encoder, lowercase
        self.category_order = category_order
        self.augmentation = augmentation
        self._translations, self._make_translations = translations, make_translations
        if translator is None and translations is not None:
            translator = dataclasses.asdict(translations.settings)
        self.translator = dict(translator or {})  # the translator's settings, as a bundle keeps them

    def to_dict(self) -> dict:
        """Everything a served model needs to write its inputs exactly as training did, as plain JSON values."""
        augmentation = self.augmentation
        if isinstance(augmentation, DictConfig):
            augmentation = OmegaConf.to_container(augmentation, resolve=True)
        return {
            "templates": dict(self.templates),
            "encoder": self.encoder,
            "lowercase": self.lowercase,
            "augmentation": dict(augmentation or {}),
            "translator": dict(self.translator),
            "category_order": self.category_order,
        }

    @classmethod
    def from_dict(cls, values: dict, make_translations: Callable[[dict], object] | None = None) -> Preprocessor:
        """The preprocessor `to_dict` described; `make_translations(translator)` makes its translator when first
        needed (the bundle's settings, or the served model's own translations file)."""
        translator = values["translator"]
        return cls(
            values["templates"],
            values["encoder"],
            values["lowercase"],
            OmegaConf.create(values["augmentation"]),
            make_translations=(lambda: make_translations(translator)) if make_translations else None,
            category_order=values["category_order"],
            translator=translator,
        )

    @property
    def translations(self):
        if self._translations is None and self._make_translations is not None:
            self._translations = self._make_translations()
        return self._translations

    def clean(self, records: list[Record], drop_empty_queries: bool = True) -> tuple[list[Record], CleanReport]:
        """Normalised text; rows with an empty query dropped (training) or kept empty (scoring)."""
        return clean_records(records, lowercase=self.lowercase, drop_empty_queries=drop_empty_queries)

    def rewrite(self, records: list[Record]) -> list[Record]:
        """The text rewrites a served model replays (translation concat, tags)."""
        translations = self.translations if needs_translations(self.augmentation) else None
        return rewrite_text(records, self.augmentation, translations)

    def format(self, records: list[Record], template: str | None = None) -> list:
        """One model input per record: its task's prompt (or `template` for all), or an encoder pair."""
        if self.encoder:
            return [(r.query, self.target(r)) for r in records]
        return [
            (template or self.templates[r.task]).format(query=r.query, target=self.target(r), language=r.language)
            for r in records
        ]

    def target(self, record: Record) -> str:
        """The candidate as the model reads it: a category path leaf first when `category_order` says so (the
        query usually names the leaf; a mean-pooled encoder then weighs it most)."""
        if self.category_order == "leaf_first" and TASKS[record.task].target_is_path:
            return " < ".join(reversed(category_levels(record.target)))
        return record.target

    def inputs(self, records: list[Record], template: str | None = None) -> list:
        """Raw rows to model inputs in one call (every row kept: each id gets a score)."""
        cleaned, _ = self.clean(records, drop_empty_queries=False)
        return self.format(self.rewrite(cleaned), template)
