"""What an augmentation is, and the registry of them: a new one is one `Augmentation` subclass, registered, in a
module of this package, plus its YAML file in conf/augmentation/ (whose top key is its `name`)."""

from __future__ import annotations

import numpy as np

from relevance.data.records import Record
from relevance.errors import require_number


class Augmentation:
    """A record transform between cleaning and splitting, given its options (`augmentation.<name>`). It may
    rewrite every row's text (the served model replays it), add training-only rows each tied to the row it came
    from, or only mark a stage the run adds (self-validation); it refuses options that cannot work in `check`."""

    name = ""
    order = 0  # where it applies among the chosen ones (rewrites and extra rows run in this order)
    count_metric = ""  # the run's metric counting the rows it added
    seed_offset = 0  # its extra rows draw from the run's seed plus this
    extra_rows_follow_source = False  # an extra row trains in its source row's folds only (else: wherever it fits)

    def rewrites(self, options) -> bool:
        return False

    def rewrite(self, records: list[Record], options, translations) -> list[Record]:
        return records

    def adds_rows(self, options) -> bool:
        return False

    def extra_rows(self, records: list[Record], options, translations, cache, seed: int):
        """(the extra rows, the index in `records` of the row each came from)."""
        return [], np.zeros(0, dtype=int)

    def needs_translator(self, options) -> bool:
        return False

    def check(self, options) -> None:
        """Refuse options that cannot work, in one sentence naming the key."""


AUGMENTATIONS: dict[str, Augmentation] = {}


def register(cls: type[Augmentation]) -> type[Augmentation]:
    AUGMENTATIONS[cls.name] = cls()
    return cls


def chosen(augmentation) -> list[tuple[Augmentation, object]]:
    """The augmentations the config selects (`augmentation=[...]`), with their options, in the order they apply."""
    if not augmentation:
        return []
    found = [(AUGMENTATIONS[name], augmentation[name]) for name in augmentation if name in AUGMENTATIONS]
    return sorted(found, key=lambda pair: pair[0].order)


def check_count(value, key: str, minimum: int = 1) -> None:
    """An option that counts something: an integer of at least `minimum`."""
    require_number(value, key, integer=True, minimum=minimum)
