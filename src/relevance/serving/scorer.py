"""The logged model: LoRA adapters + heads of every fold, the threshold, the template and a reference to the base
weights (never the weights themselves). One object scores pairs for predict.py and `mlflow models serve` alike."""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from relevance.data.records import ALL_LANGUAGES, MAX_FIELD_CHARS, Record
from relevance.errors import RelevanceError
from relevance.model import finetune
from relevance.runtime import inference_device, weights_dtype
from relevance.serving.bundle import ModelBundle
from relevance.tasks import TASKS, task_kind
from relevance.text.preprocess import Preprocessor


def default_cache() -> Path:
    return Path(os.environ.get("RELEVANCE_CACHE", Path.home() / ".cache" / "relevance"))


ENSEMBLES = ("auto", "folds", "refit")
log = logging.getLogger(__name__)


class RelevanceScorer:
    """Loads a bundle: the base once, then the adapters by name. `ensemble="folds"` scores with the mean
    probability of the fold models; `"refit"` with the one model trained on all rows (train.refit=true) at its own
    threshold; `"auto"` (default) with the refit when the model has one (it beat the fold ensemble on the taxonomy
    benchmark's unseen languages, BENCHMARKS.md), else the folds.

    `RelevanceScorer(bundle).predict([("casquette", "apparel accessories,hats & caps")])` -> array of scores.

    `trust_remote_code` must be given by the caller: a bundle asking for it is refused otherwise, so a tampered
    model file cannot make prediction run code from wherever its backbone points.

    `merge=True` adds the LoRA product into the base weights once (one matmul per layer instead of three; +8% on
    batch scoring, BENCHMARKS.md) when the scorer holds one model (a refit, or one fold). A fold ensemble is never
    merged: removing one fold's product to add the next rounds the base weights a little further each time, so a
    long-running server's scores would drift from request to request.

    One scorer serves concurrent requests (MLflow's server runs them in threads): the active fold, its merged
    weights and its head's index are one shared model's state, so a request scores under a lock, and gets the same
    score for a row whatever else is being scored. Requests then run one after another; on a CPU one request
    already keeps every core busy (BENCHMARKS.md, "Serving under concurrent requests")."""

    def __init__(
        self,
        bundle: str | Path,
        cache: str | Path | None = None,
        device: str | None = None,
        ensemble: str = "auto",
        translations_file: str | Path | None = None,
        merge: bool = True,
        trust_remote_code: bool = False,
        precision: str | None = None,
    ):
        from peft import PeftModel

        from relevance.model.backbones import load_tokenizer
        from relevance.model.heads import build_head
        from relevance.weights import resolve_source

        bundle = Path(bundle)
        self.bundle = ModelBundle.load(bundle)
        if ensemble not in ENSEMBLES:
            raise RelevanceError(f"ensemble={ensemble!r} is not known; use auto, folds or refit.")
        if ensemble == "auto":
            ensemble = "refit" if self.bundle.refit else "folds"
        if ensemble == "refit" and not self.bundle.refit:
            raise RelevanceError(
                "ensemble=refit: this model has no full-data refit; train it with "
                "train.refit=true, or use ensemble=folds."
            )
        self.cache = Path(cache or default_cache())
        backbone = OmegaConf.create(self.bundle.backbone)
        if backbone.get("trust_remote_code") and not trust_remote_code:
            raise RelevanceError(
                f"this model's backbone {backbone.get('hub_id') or backbone.name} would run code from its own "
                f"repository (trust_remote_code); a model file never turns that on by itself: add "
                f"trust_remote_code=true to the predict command if you trust that code."
            )
        self.device = torch.device(device or inference_device())
        dtype = weights_dtype(backbone.dtype, self.device.type == "cuda")
        location = resolve_source(backbone, self.cache)
        self.tokenizer = load_tokenizer(backbone, location)
        head_cfg = OmegaConf.create(self.bundle.head)
        self.head = build_head(head_cfg, self.tokenizer)
        base = self.head.load(backbone, location, self.tokenizer, dtype, head_cfg, device=str(self.device))
        folds = self.bundle.fold_names(ensemble)
        self.full_weights = None
        if finetune.method(backbone) == "full":  # each fold's unfrozen weights, swapped into the one base
            self.full_weights = {fold: finetune.read_trainable(bundle / "adapters" / fold) for fold in folds}
            model = base
        else:
            model = PeftModel.from_pretrained(base, bundle / "adapters" / folds[0], adapter_name=folds[0])
            for fold in folds[1:]:
                model.load_adapter(bundle / "adapters" / fold, adapter_name=fold)
        self.model = model.to(self.device).eval()
        self.folds = folds
        self.merge = merge and self.full_weights is None and len(folds) == 1
        self._active: str | None = None  # the fold whose weights are in place
        self.precision = self._set_precision(precision or self.bundle.precision, backbone)
        self._scoring = threading.Lock()  # the fold that scores is shared state: one request at a time
        # a refit model has its own threshold (threshold.refit, reporting.refit_report); per-language ones fit the folds
        self.thresholds = self.bundle.decision_thresholds(ensemble)
        own_refit = ensemble == "refit" and bool(self.bundle.refit_thresholds)
        self.language_thresholds = (
            {}
            if own_refit
            else {
                task: {language: float(t) for language, t in by_language.items()}
                for task, by_language in self.bundle.language_thresholds.items()
            }
        )
        self.ensemble = ensemble
        self.translations_file = translations_file
        self.preprocessor = Preprocessor.from_dict(self.bundle.preprocessor, self._make_translations)
        self.templates = self.preprocessor.templates

    def _set_precision(self, precision: str, backbone) -> str:
        """int8 (serving/precision.py): the one model's weights put in place, folded into the base, and its
        backbone's linear layers quantized; on a GPU the model keeps its logged precision."""
        from relevance.serving.precision import PRECISIONS, quantize_int8

        if precision not in PRECISIONS:
            raise RelevanceError(f"precision={precision!r} is not known; use {' or '.join(PRECISIONS)}.")
        if precision == "fp32":
            return precision
        if self.device.type != "cpu":
            log.info("int8 weights are a CPU path; scoring on %s in the logged precision", self.device)
            return "fp32"
        if len(self.folds) != 1:
            raise RelevanceError(
                f"int8 scores one model; this scorer averages {len(self.folds)} folds: use ensemble=refit (or "
                f"ensemble=auto on a model trained with train.refit=true)."
            )
        fold = self.folds[0]
        if self.full_weights is not None:
            finetune.load_trainable(self.model, self.full_weights[fold])
        else:
            self.model.set_adapter(fold)
            self.model = self.model.merge_and_unload()
        self.model = quantize_int8(self.model, backbone.head_module)
        self._active = fold
        return precision

    @property
    def translations(self):
        """The training run's translator, for translation concat (made when first needed); `translations_file`
        replaces a file translator's file (new queries need their own translations)."""
        return self.preprocessor.translations

    def _make_translations(self, translator: dict):
        from relevance.text.translation import make_translations
        from relevance.weights import translator_location

        if self.translations_file:  # new queries need their own translations
            translator = {"name": "file", "kind": "file", "path": str(self.translations_file)}
        return make_translations(
            translator,
            self.cache,
            self.preprocessor.lowercase,
            functools.partial(translator_location, cache=self.cache),
        )

    @property
    def task(self) -> str:
        """QC, QI, or JOINT (one model for both; rows say which task they are)."""
        return self.bundle.task

    @property
    def tasks(self) -> list[str]:
        return list(self.templates)

    @property
    def threshold(self) -> float:
        """The decision threshold of a single-task model (a joint model has one per task: `thresholds`)."""
        if len(self.thresholds) != 1:
            raise RelevanceError("this joint model has one threshold per task; use scorer.thresholds[task].")
        return next(iter(self.thresholds.values()))

    def predict(
        self, pairs: list[tuple[str, str]], batch_size: int | None = None, task: str | None = None
    ) -> np.ndarray:
        """Scores in [0, 1] for (query, target) pairs; compare with `self.threshold` to decide. A joint model
        needs `task="QC"` or `"QI"`."""
        task = task or self.task
        if task not in self.templates:
            raise RelevanceError(f"task={task!r}: this model scores {' or '.join(self.tasks)}; pass one of them.")
        records = [Record(id=i, task=task, language="", query=q, target=t) for i, (q, t) in enumerate(pairs)]
        return self.predict_records(records, batch_size)

    def records_from_frame(self, frame: pd.DataFrame) -> list[Record]:
        """Rows of a DataFrame (pyfunc / REST input), each field checked: the query and the task's target as text
        of at most MAX_FIELD_CHARS characters, the language a known code or empty. A joint model reads each row's
        `task` column and its category_path (QC) or item_title (QI). A mistake is a ValueError naming the row
        and the field (REST: 400)."""
        reads_task = task_kind(self.task).rows_name_their_task
        if reads_task and "task" not in frame.columns:
            raise ValueError("input is missing column 'task'; a joint model needs QC or QI on every row.")
        columns = {c: frame[c].tolist() for c in frame.columns}
        if reads_task:
            tasks = [_text(value, i, "task", required=True).upper() for i, value in enumerate(columns["task"])]
        else:
            tasks = [self.task] * len(frame)
        unknown = sorted(set(tasks) - set(self.templates))
        if unknown:
            raise ValueError(f"task {unknown[0]!r} is not one this model scores ({', '.join(self.tasks)}).")
        needed = ["origin_query", *sorted({TASKS[t].target_field for t in tasks})]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(
                f"input is missing column(s) {missing}; rows need origin_query and the task's target "
                f"(category_path for QC, item_title for QI)."
            )
        known = set(ALL_LANGUAGES) | set(self.bundle.seen_languages)
        languages = columns.get("language", [None] * len(frame))
        records = []
        for i, task in enumerate(tasks):
            language = _text(languages[i], i, "language").strip().lower()
            if language and language not in known:
                raise ValueError(
                    f"row {i}: language {language!r} is not a code this model knows ({', '.join(sorted(known))}); "
                    f"leave it out when unknown."
                )
            target_field = TASKS[task].target_field
            query = _text(columns["origin_query"][i], i, "origin_query", required=True)
            records.append(Record(i, task, language, query, _text(columns[target_field][i], i, target_field, True)))
        return records

    def row_thresholds(self, records: list[Record], scores: np.ndarray | None = None) -> np.ndarray:
        """Each row's threshold: its language's when the run tuned one (threshold.per_language), else its task's.
        With threshold.unseen=matched_rate and the rows' scores, a language unseen in training that has enough
        rows here gets its own score quantile (thresholds.matched_rate)."""
        from relevance.evaluation.thresholds import matched_rate, row_thresholds

        tasks = np.array([r.task for r in records])
        languages = np.array([r.language for r in records])
        decided = np.empty(len(records), dtype=float)
        for task in sorted(set(tasks.tolist())):
            rows = tasks == task
            own = dict(self.language_thresholds.get(task, {}))
            if scores is not None and self.bundle.unseen_threshold == "matched_rate":
                own |= matched_rate(
                    languages[rows],
                    np.asarray(scores)[rows],
                    set(self.bundle.seen_languages),
                    self.bundle.positive_rates[task],
                    self.bundle.min_language_rows,
                )
            decided[rows] = row_thresholds(languages[rows].tolist(), self.thresholds[task], own)
        return decided

    def decide(self, records: list[Record], scores: np.ndarray) -> np.ndarray:
        """0/1 per row at its threshold."""
        return (np.asarray(scores) >= self.row_thresholds(records, scores)).astype(int)

    def _activate(self, fold: str) -> None:
        """Make `fold` the model that scores (and what its head needs to score, such as a catalogue's index)."""
        self._swap_weights(fold)
        self.head.prepare_scoring(
            self.model, self.tokenizer, self.bundle.catalogue, self.bundle.max_length, self.bundle.eval_batch_size, fold
        )

    def _swap_weights(self, fold: str) -> None:
        """Make `fold` the weights that score: its unfrozen tensors (full fine-tuning, copied in), or its adapter,
        merged into the base when the scorer holds one model (see `merge`)."""
        if self._active == fold:
            return
        if self.full_weights is not None:
            finetune.load_trainable(self.model, self.full_weights[fold])
        else:
            self.model.set_adapter(fold)
            if self.merge:
                self.model.merge_adapter()
        self._active = fold

    def _in_swap_order(self) -> list[str]:
        """The folds, starting with the one already in place (a one-fold or refit model never swaps)."""
        start = self.folds.index(self._active) if self._active in self.folds else 0
        return self.folds[start:] + self.folds[:start]

    def predict_records(
        self, records: list[Record], batch_size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Mean probability over the fold adapters, with exactly the training run's preprocessing; one request at
        a time (see the class's docstring)."""
        with self._scoring:
            return self._score(records, batch_size, progress)

    def _score(self, records: list[Record], batch_size: int | None, progress: bool) -> np.ndarray:
        inputs = self.preprocessor.inputs(records)
        by_fold = np.zeros((len(self.folds), len(inputs)))  # averaged in the folds' order, whatever order scored
        with torch.inference_mode():
            for fold in self._in_swap_order():
                self._activate(fold)
                by_fold[self.folds.index(fold)] = self.head.score(
                    self.model,
                    self.tokenizer,
                    inputs,
                    batch_size or self.bundle.eval_batch_size,
                    self.bundle.max_length,
                    self.device,
                    desc=f"scoring {fold}" if progress else "",
                )
        return by_fold.mean(axis=0)


class RelevancePyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: DataFrame of rows in, DataFrame of `score` and `prediction` out."""

    def load_context(self, context) -> None:
        self.scorer = RelevanceScorer(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Bad rows answer 400 with the row and the field (MlflowException); an empty list answers []."""
        if len(model_input) == 0:
            return pd.DataFrame({"score": pd.Series(dtype=float), "prediction": pd.Series(dtype=int)})
        try:
            records = self.scorer.records_from_frame(model_input)
        except ValueError as error:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        scores = self.scorer.predict_records(records)
        return pd.DataFrame({"score": scores, "prediction": self.scorer.decide(records, scores)})


def _text(value, row: int, field: str, required: bool = False) -> str:
    """One input field as text: null (or missing) is "" unless `required`; anything but a string, or a string
    over MAX_FIELD_CHARS, is refused naming the row and the field."""
    if value is None or (not isinstance(value, (list, dict, tuple, np.ndarray)) and pd.isna(value)):
        if required:
            raise ValueError(f"row {row}: {field} is null or missing; every row needs it as text.")
        return ""
    if not isinstance(value, str):
        kind = {list: "a list", dict: "an object", bool: "true/false"}.get(type(value), f"the number {value!r}")
        if isinstance(value, (np.ndarray, tuple)):
            kind = "a list"
        raise ValueError(f"row {row}: {field} is {kind}, not text; send it as a JSON string.")
    if len(value) > MAX_FIELD_CHARS:
        raise ValueError(
            f"row {row}: {field} is {len(value):,} characters long; send at most {MAX_FIELD_CHARS:,} (the model "
            f"reads far fewer)."
        )
    return value
