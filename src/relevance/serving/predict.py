"""Batch prediction with a logged or registered model: a competition file in, a validated submission file out."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import mlflow
import numpy as np

from relevance import tracking
from relevance.data.reader import read_records
from relevance.data.sources import data_file
from relevance.errors import ConfigError, RelevanceError
from relevance.evaluation.metrics import all_positive_f1, scores_at
from relevance.serving.submission import write_submission, zip_submissions
from relevance.tasks import TASKS


def is_run_id(reference: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{32}", reference) is not None


def model_uri(reference: str) -> str:
    """Accept `models:/name@alias`, `models:/name/3`, `runs:/<id>/<model name>`, or a bare run id (its model,
    looked up in the tracking store)."""
    return tracking.model_uri(reference) if is_run_id(reference) else reference


def download_bundle(reference: str, download_to: str | Path | None = None) -> tuple[Path, Path]:
    """The model's copy on this machine and its bundle folder (`download_to`: where to copy it; None: MLflow's
    own temporary folder)."""
    from relevance.serving.bundle import BUNDLE_FILE

    try:
        downloaded = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri(reference), dst_path=str(download_to) if download_to else None
            )
        )
    except mlflow.exceptions.MlflowException as error:
        raise RelevanceError(
            f"model={reference}: {error.message.splitlines()[0]}; give models:/<name>@<alias>, "
            f"models:/<name>/<version> or a training run id."
        ) from None
    folder = downloaded / "artifacts" / "bundle"
    if not (folder / BUNDLE_FILE).is_file():
        raise RelevanceError(
            f"model={reference} is not a relevance model (no {BUNDLE_FILE} in it); give a model logged by train.py."
        )
    return downloaded, folder


def download_bundle_file(reference: str, download_to: str | Path) -> Path:
    """The model's bundle file alone (a few hundred kB: what the model is, not its weights), in `download_to`."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from relevance.serving.bundle import BUNDLE_FILE

    Path(download_to).mkdir(parents=True, exist_ok=True)
    try:
        path = get_artifact_repository(model_uri(reference)).download_artifacts(
            f"artifacts/bundle/{BUNDLE_FILE}", str(download_to)
        )
    except mlflow.exceptions.MlflowException as error:
        raise RelevanceError(
            f"model={reference}: {error.message.splitlines()[0]}; give models:/<name>@<alias>, "
            f"models:/<name>/<version> or a training run id."
        ) from None
    except OSError:
        path = None
    if path is None or not Path(path).is_file():
        raise RelevanceError(
            f"model={reference} is not a relevance model (no {BUNDLE_FILE} in it); give a model logged by train.py."
        )
    return Path(path)


def as_given(error: RelevanceError, downloaded: Path, reference: str) -> RelevanceError:
    """The error naming the model as the user gave it, not its temporary copy."""
    return RelevanceError(str(error).replace(str(downloaded), reference.rstrip("/")))


def load_scorer(
    reference: str,
    ensemble: str = "auto",
    translations_file: str | None = None,
    cache: str | None = None,
    download_to: str | Path | None = None,
    trust_remote_code: bool = False,
):
    """The model's scorer; `ensemble` picks the fold average or the full-data refit; `translations_file` gives
    the new queries' translations to a model trained with translator=file; `download_to` is the folder the model
    is copied into (the caller removes it; None: MLflow's own temporary folder)."""
    from relevance.serving.scorer import RelevanceScorer

    downloaded, folder = download_bundle(reference, download_to)
    try:
        return RelevanceScorer(
            folder,
            cache=cache,
            ensemble=ensemble,
            translations_file=translations_file,
            trust_remote_code=trust_remote_code,
        )
    except RelevanceError as error:
        raise as_given(error, downloaded, reference) from None


def predict_file(cfg, scorer, task: str) -> Path:
    """Score `<file>_<task>.txt` and write its submission file; print F1 when the file is labelled."""
    path = data_file(cfg.data, cfg.paths.cache, task, cfg.file)
    records = read_records(path, task)
    scores = scorer.predict_records(records, batch_size=cfg.batch_size, progress=cfg.progress)
    threshold = (
        scorer.row_thresholds(records, scores) if cfg.threshold is None else np.full(len(records), float(cfg.threshold))
    )
    predictions = (scores >= threshold).astype(int)
    ids = [r.id for r in records]
    output = write_submission(Path(cfg.output_dir) / TASKS[task].file_name("submit"), ids, predictions, ids)
    scored_by = "the full-data refit" if scorer.ensemble == "refit" else f"the mean of {len(scorer.folds)} fold models"
    print(
        f"wrote {output}: {len(ids)} rows, {int(predictions.sum())} predicted relevant "
        f"({np.mean(predictions):.1%}) at {_describe(threshold)}, scored by {scored_by}"
    )
    if all(r.label is not None for r in records):  # a labelled file (the demo's dev, or train): say how it did
        labels = np.array([r.label for r in records])
        print(
            f"F1 on {path.name}: {scores_at(labels, scores, threshold).f1:.4f} "
            f"(all-positive floor {all_positive_f1(labels):.4f})"
        )
    return output


def _describe(threshold: np.ndarray) -> str:
    distinct = np.unique(threshold)
    return (
        f"threshold {distinct[0]:.3f}"
        if len(distinct) == 1
        else f"per-language thresholds {distinct.min():.3f}-{distinct.max():.3f}"
    )


def check_output_dir(folder: str) -> None:
    """Before any scoring: `output_dir` is (or can be made) a folder this process can write in."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output_dir={folder} is a file; give a folder for the submission files.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"output_dir={folder} cannot be made ({error.strerror}); give a folder you can write in."
        ) from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"output_dir={folder} is not writable; give a folder you can write in.")


def run(cfg) -> Path | list[Path]:
    if not cfg.model:
        raise ConfigError("predict.py needs model=<models:/name@alias | models:/name/version | run id>.")
    if cfg.threshold is not None and (not isinstance(cfg.threshold, (int, float)) or not 0 <= cfg.threshold <= 1):
        raise ConfigError(
            f"threshold={cfg.threshold!r} must be a number between 0 and 1 (or null for the model's own)."
        )
    check_output_dir(cfg.output_dir)
    store = cfg.tracking_uri or tracking.default_tracking_uri(cfg.paths.root)
    from_store = is_run_id(cfg.model) or cfg.model.startswith(("models:/", "runs:/"))  # not a folder or file://
    mlflow.set_tracking_uri(tracking.existing_store(store) if from_store else store)
    if cfg.translations and not Path(cfg.translations).is_file():
        raise ConfigError(
            f"translations={cfg.translations} is not a file; give the JSON Lines translations of the queries to score."
        )
    with tempfile.TemporaryDirectory(prefix="relevance-model-") as download:  # no model copy left behind
        scorer = load_scorer(
            cfg.model, cfg.ensemble, cfg.translations, cfg.paths.cache, download, bool(cfg.trust_remote_code)
        )
        outputs = [predict_file(cfg, scorer, task) for task in scorer.tasks]  # a joint model writes both tasks
    archive = zip_submissions(cfg.output_dir)
    if archive:
        print(f"both tasks present: {archive} is ready to upload")
    return outputs[0] if len(outputs) == 1 else outputs
