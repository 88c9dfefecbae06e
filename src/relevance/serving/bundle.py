"""The model bundle: the one contract between training and serving. Training fills a `ModelBundle` and saves it
beside the fold weights; the served model loads it back. Everything a prediction needs that is not a weight lives
here, typed and versioned, so a field renamed on one side cannot be silently read as missing on the other."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from relevance.errors import RelevanceError

BUNDLE_FILE = "relevance.json"
BUNDLE_VERSION = 2  # 1: the untyped description of relevance 0.1 (no `version` field)


@dataclass
class ModelBundle:
    """What a logged model knows besides its weights (which sit in `adapters/<fold>` next to the file)."""

    task: str  # QC, QI or JOINT
    backbone: dict  # the backbone config (hub id or packaged name, never a local path)
    head: dict  # the head config (name, prompt styles, answers, prefixes)
    templates: dict[str, str]  # task code -> prompt template ({query}, {target}, {language})
    encoder: bool  # (query, target) pairs instead of prompts
    lowercase: bool  # the cleaning setting
    augmentation: dict  # text rewrites to replay (translation concat, tags)
    translator: dict  # where concat translations come from
    max_length: int  # tokens per row, prompt included
    eval_batch_size: int
    folds: list[str]  # fold weight folders, averaged by the fold ensemble
    thresholds: dict[str, float]  # task -> decision threshold (out-of-fold)
    language_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)  # threshold.per_language
    unseen_threshold: str = "shared"  # threshold.unseen: shared | matched_rate
    min_language_rows: int = 0
    positive_rates: dict[str, float] = field(default_factory=dict)  # task -> out-of-fold rate called relevant
    seen_languages: list[str] = field(default_factory=list)
    refit: str | None = None  # the full-data refit's weight folder, if trained
    refit_thresholds: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    category_order: str = "root_first"  # clean.category_order (bundles written before it had none: root_first)
    catalogue: list[str] = field(default_factory=list)  # head.catalogue_margin: the categories scores compare with
    version: int = BUNDLE_VERSION

    def save(self, folder: Path) -> Path:
        """Write the description into `folder` (which already holds `adapters/`); returns the folder."""
        folder = Path(folder)
        (folder / BUNDLE_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        path = Path(folder) / BUNDLE_FILE
        if not path.is_file():
            raise RelevanceError(
                f"{folder} is not a relevance model (no {BUNDLE_FILE} in it); give a model logged by train.py."
            )
        values = json.loads(path.read_text())
        version = values.get("version", 1)
        if version != BUNDLE_VERSION:
            fix = "retrain it" if version < BUNDLE_VERSION else "upgrade relevance"
            raise RelevanceError(
                f"{path} is a version {version} model bundle and this relevance reads version "
                f"{BUNDLE_VERSION}; {fix} to use it."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        if unknown or missing:
            raise RelevanceError(
                f"{path} does not match bundle version {BUNDLE_VERSION} "
                f"({'unknown ' + ', '.join(unknown) if unknown else 'missing ' + ', '.join(missing)});"
                f" it was edited or written by another relevance; retrain it."
            )
        return cls(**values)

    def fold_names(self, ensemble: str) -> list[str]:
        return [self.refit] if ensemble == "refit" else list(self.folds)

    def decision_thresholds(self, ensemble: str) -> dict[str, float]:
        """The refit's own thresholds when it scores, else the folds'."""
        chosen = self.refit_thresholds if ensemble == "refit" and self.refit_thresholds else self.thresholds
        return {task: float(value) for task, value in chosen.items()}
