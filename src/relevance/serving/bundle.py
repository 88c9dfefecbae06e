"""The model bundle: the one contract between training and serving. Training fills a `ModelBundle` and saves it
beside the fold weights; the served model loads it back. Everything a prediction needs that is not a weight lives
here, typed and versioned, so a field renamed on one side cannot be silently read as missing on the other."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from relevance.errors import RelevanceError

BUNDLE_FILE = "relevance.json"
BUNDLE_VERSION = 3  # 1: the untyped description of relevance 0.1 (no `version` field); 2: the preprocessor's six
# settings as loose fields (read, moved into `preprocessor`)
PREPROCESSOR_FIELDS_OF_VERSION_2 = ("templates", "encoder", "lowercase", "augmentation", "translator", "category_order")
ADAPTERS = "adapters"
log = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """What a logged model knows besides its weights (which sit in `adapters/<fold>` next to the file)."""

    task: str  # QC, QI or JOINT
    backbone: dict  # the backbone config (hub id or packaged name, never a local path)
    head: dict  # the head config (name, prompt styles, answers, prefixes)
    preprocessor: dict  # Preprocessor.to_dict(): templates, encoder pairs, cleaning, rewrites, translator, path order
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
    catalogue: list[str] = field(default_factory=list)  # head.catalogue_margin: the categories scores compare with
    digests: dict[str, str] = field(default_factory=dict)  # weight folder -> sha256 of its files, made by `save`
    precision: str = "fp32"  # fp32 | int8 (written by `relevance quantize` after its F1 check)
    precision_check: dict = field(default_factory=dict)  # that check: F1 and pairs/s of both precisions
    version: int = BUNDLE_VERSION

    def save(self, folder: Path) -> Path:
        """Write the description into `folder` (which already holds `adapters/`), with the digest of every weight
        folder it names; returns the folder."""
        folder = Path(folder)
        self.digests = {name: weights_digest(folder / ADAPTERS / name) for name in self.weight_folders()}
        (folder / BUNDLE_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False))
        return folder

    @property
    def tasks(self) -> list[str]:
        """The task codes the model scores (one, or QC and QI for a joint model)."""
        return list(self.preprocessor.get("templates") or {})

    def weight_folders(self) -> list[str]:
        return [*self.folds, *([self.refit] if self.refit else [])]

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        path = Path(folder) / BUNDLE_FILE
        if not path.is_file():
            raise RelevanceError(
                f"{folder} is not a relevance model (no {BUNDLE_FILE} in it); give a model logged by train.py."
            )
        try:
            values = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RelevanceError(
                f"{path} is damaged ({error}); download or copy the model again, or retrain it."
            ) from None
        if not isinstance(values, dict):
            raise RelevanceError(f"{path} is damaged (not a JSON object); download or copy the model again.")
        version = values.get("version", 1)
        if version == 2:
            log.info("%s is a version 2 bundle: its preprocessor settings read as one field", path)
            values = _from_version_2(values)
            version = values["version"]
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
        bundle = cls(**values)
        bundle.check(Path(folder))
        return bundle

    def check(self, folder: Path) -> None:
        """Every field's type and range, and the weight folders it names against the files beside it: refused
        in one sentence naming the field and the file, before anything loads or scores."""
        from relevance.tasks import KINDS, TASKS
        from relevance.text.preprocess import Preprocessor

        path = folder / BUNDLE_FILE
        hints = typing.get_type_hints(type(self))
        for name in hints:
            if not _has_type(getattr(self, name), hints[name]):
                raise RelevanceError(f"{path}: `{name}` is {getattr(self, name)!r}, not {_type_name(hints[name])}.")
        unlike = sorted(set(self.preprocessor) ^ set(Preprocessor.SAVED))
        if unlike:
            raise RelevanceError(
                f"{path}: `preprocessor` {'lacks' if unlike[0] in Preprocessor.SAVED else 'has an unknown'} "
                f"`{unlike[0]}`; the file was edited or damaged: download the model again or retrain it."
            )
        for name, hint in Preprocessor.SAVED.items():
            value = self.preprocessor[name]
            if not _has_type(value, hint):
                raise RelevanceError(f"{path}: `preprocessor.{name}` is {value!r}, not {_type_name(hint)}.")
        tasks, order = self.tasks, self.preprocessor["category_order"]
        checks = [
            ("task", self.task in KINDS, f"{self.task!r} is not {', '.join(list(KINDS)[:-1])} or {list(KINDS)[-1]}"),
            ("preprocessor.templates", bool(tasks) and set(tasks) <= set(TASKS), f"names the tasks {tasks}"),
            ("max_length", self.max_length >= 1, "is under 1"),
            ("eval_batch_size", self.eval_batch_size >= 1, "is under 1"),
            ("folds", bool(self.folds), "lists no fold"),
            ("thresholds", set(self.thresholds) == set(tasks), f"covers {sorted(self.thresholds)}, not {tasks}"),
            ("unseen_threshold", self.unseen_threshold in ("shared", "matched_rate"), "is not shared or matched_rate"),
            ("preprocessor.category_order", order in ("root_first", "leaf_first"), "is not root_first or leaf_first"),
            ("min_language_rows", self.min_language_rows >= 0, "is negative"),
            ("backbone", bool(self.backbone.get("name")), "has no name"),
            ("head", bool(self.head.get("name")), "has no name"),
            ("precision", self.precision in ("fp32", "int8"), "is not fp32 or int8"),
            ("precision_check", self.precision == "fp32" or bool(self.precision_check), "is empty for int8"),
        ]
        for name, values in (
            ("thresholds", self.thresholds),
            ("refit_thresholds", self.refit_thresholds),
            ("positive_rates", self.positive_rates),
            *((f"language_thresholds.{task}", v) for task, v in self.language_thresholds.items()),
        ):
            outside = {key: value for key, value in values.items() if not 0.0 <= value <= 1.0}
            checks.append((name, not outside, f"holds {outside}, outside [0, 1]"))
        for name, holds, problem in checks:
            if not holds:
                raise RelevanceError(
                    f"{path}: `{name}` {problem}; the file was edited or damaged: download the model again or "
                    f"retrain it."
                )
        self._check_weights(folder)

    def _check_weights(self, folder: Path) -> None:
        """Each weight folder present, recorded for this backbone, and unchanged since it was logged."""
        base = self.backbone.get("hub_id") or self.backbone.get("name")
        for name in self.weight_folders():
            weights = folder / ADAPTERS / name
            if not weights.is_dir():
                raise RelevanceError(
                    f"{folder / BUNDLE_FILE} lists `{name}` but {weights} is missing; copy the whole model folder."
                )
            config = weights / "adapter_config.json"
            if config.is_file():
                try:
                    named = json.loads(config.read_text()).get("base_model_name_or_path")
                except (UnicodeDecodeError, json.JSONDecodeError):
                    named = None  # the digest below names the damage
                if named is not None and named != base:
                    raise RelevanceError(
                        f"{config} was trained on {named!r} but {folder / BUNDLE_FILE} names the base {base!r}; "
                        f"the adapters and the description come from different models."
                    )
            if not self.digests:
                continue
            expected, found = self.digests.get(name), weights_digest(weights)
            if expected != found:
                raise RelevanceError(
                    f"{weights} does not hold the weights that were logged (sha256 {found[:12]}, recorded "
                    f"{(expected or 'none')[:12]} in {folder / BUNDLE_FILE}); the copy is damaged or was changed: "
                    f"download the model again."
                )
        if not self.digests:
            log.warning("%s records no digests of its weights (logged before they were kept); not checked", folder)

    def fold_names(self, ensemble: str) -> list[str]:
        return [self.refit] if ensemble == "refit" else list(self.folds)

    def decision_thresholds(self, ensemble: str) -> dict[str, float]:
        """The refit's own thresholds when it scores, else the folds'."""
        chosen = self.refit_thresholds if ensemble == "refit" and self.refit_thresholds else self.thresholds
        return {task: float(value) for task, value in chosen.items()}


def _from_version_2(values: dict) -> dict:
    """A version 2 bundle read as version 3: its six loose preprocessor settings become the `preprocessor` field
    (a bundle written before clean.category_order existed had none: root_first)."""
    values = dict(values)
    preprocessor = {name: values.pop(name) for name in PREPROCESSOR_FIELDS_OF_VERSION_2 if name in values}
    preprocessor.setdefault("category_order", "root_first")
    return values | {"preprocessor": preprocessor, "version": 3}


def weights_digest(folder: Path) -> str:
    """sha256 over a weight folder's files (its adapter config and weights; names and contents), in name order."""
    from relevance.model.finetune import WEIGHT_FILES

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).iterdir() if p.name in ("adapter_config.json", *WEIGHT_FILES)):
        digest.update(path.name.encode())
        with path.open("rb") as weights:
            for block in iter(lambda: weights.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _has_type(value, hint) -> bool:
    """Whether a JSON value fits a field's annotation (bool, int, float, str, dict/list of them, or None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, dict, list):
        return isinstance(value, hint)
    if origin is list:
        return isinstance(value, list) and all(_has_type(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _has_type(key, args[0]) and _has_type(item, args[1]) for key, item in value.items()
        )
    return True


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "")
