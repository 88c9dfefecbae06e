"""Finished folds survive their process: each fold run keeps its scores, health and weights as MLflow artifacts,
and a rerun of an interrupted run (same config: same fingerprint) reopens its parent run and trains only the folds
that did not finish. A fold that was training keeps its progress (trainable weights, optimizer, step, position in
the epoch) in a local folder every `train.checkpoint_minutes`; the rerun continues it from there."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from relevance import disk
from relevance.errors import ConfigError
from relevance.runtime import global_rank, launched_per_rank
from relevance.training.health import FoldHealth

CHECKPOINT = "checkpoint"  # artifact folder of a fold run: scores.npz, health.json, weights/
FINGERPRINT_TAG = "relevance.fingerprint"
FOLD_TAG = "relevance.fold"  # which fold a child run is (`fold-0`, `self-validation/fold-1`, `refit`)
NOT_PART_OF_THE_RESULT = ("resume", "progress", "sweep")  # may differ between a run and its resumption

log = logging.getLogger(__name__)


def fingerprint(cfg) -> str:
    """Hash of everything that decides the run's results."""
    values = OmegaConf.to_container(cfg, resolve=True)
    kept = {k: v for k, v in values.items() if k not in NOT_PART_OF_THE_RESULT}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_to_resume(mode: str, config_fingerprint: str, experiment: str) -> str | None:
    """`resume=auto` (default): the newest FAILED or KILLED parent run of this experiment with this config's
    fingerprint; `resume=<run id>`: that run (refused when its config differs); `resume=never`: none."""
    if mode == "never":
        return None
    client = MlflowClient()
    if mode != "auto":
        try:
            run = client.get_run(mode)
        except mlflow.exceptions.MlflowException:
            raise ConfigError(f"resume={mode}: there is no such run in {mlflow.get_tracking_uri()}.") from None
        if run.data.tags.get(FINGERPRINT_TAG) != config_fingerprint:
            raise ConfigError(
                f"resume={mode}: that run was trained with another config; rerun its own command (its config.yaml "
                f"artifact), or leave resume unset to start afresh."
            )
        return mode
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        f"tags.`{FINGERPRINT_TAG}` = '{config_fingerprint}' and tags.`relevance.level` = 'parent' "
        f"and attributes.status != 'FINISHED' and attributes.status != 'RUNNING'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


LAST = "last"  # the progress of a training fold: last.ckpt (a file; a folder of shards under DeepSpeed)
COMPLETE = ".complete"  # beside it, written once every rank finished saving it: the step it holds


def progress_root(
    checkpoints: Path, config_fingerprint: str, minutes: float | None, trial: int | None, mode: str, runtime
) -> Path | None:
    """Where a run's training folds keep their progress, a folder each (under `checkpoints`); None when it is not
    kept: no interval set (`minutes`), a sweep trial, `resume=never` (`mode`), or ranks that torchrun or srun start
    (a rerun retrains those). The folder is named by the config's fingerprint, which every rank computes alike (a
    rank > 0 may not know rank 0's run), and which is also what a rerun resumes by."""
    if not minutes or trial is not None or mode == "never":
        return None
    if runtime.world_size > 1 and launched_per_rank():
        return None
    return Path(checkpoints) / config_fingerprint


def progress_folder(root: Path | None, name: str) -> Path | None:
    """The folder in which the training fold `name` keeps its progress (None: progress is not kept)."""
    return None if root is None else root / name.replace("/", "_")


def saved_progress(folder: Path | None) -> tuple[Path, int] | None:
    """The progress checkpoint in `folder` and its step, when every rank finished saving it (its `.complete`
    marker); one left half-saved by a kill is removed (rank 0) and the fold starts from its beginning."""
    if folder is None:
        return None
    path, marker = folder / f"{LAST}.ckpt", folder / f"{LAST}.ckpt{COMPLETE}"
    try:
        step = int(marker.read_text())
    except (OSError, ValueError):
        if path.exists():
            log.warning("%s was not saved whole; the fold starts from its beginning", path)
            if global_rank() == 0:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return None
    return (path, step) if path.exists() else None


def forget_progress(folder: Path | None) -> None:
    """A finished fold's progress folder (its checkpoint artifact replaces it), and the folders above it that
    it leaves empty; rank 0 removes them once every rank finished the fold."""
    if folder is None or global_rank() != 0:
        return
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()
        folder.parent.parent.rmdir()


def save_fold(scored: list[np.ndarray], health: FoldHealth, weights: Path | None) -> None:
    """Into the active fold run: what a resumed run needs instead of training this fold again."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        np.savez(folder / "scores.npz", *scored)
        (folder / "health.json").write_text(json.dumps(dataclasses.asdict(health)))
        if weights is not None and weights.is_dir():
            shutil.copytree(weights, folder / "weights")
        try:
            mlflow.log_artifacts(str(folder), CHECKPOINT)
        except BaseException:  # a checkpoint half copied (a full disk) is not left for anyone to read
            disk.remove_local(mlflow.get_artifact_uri(CHECKPOINT))
            raise


PARENT_VARIABLE = "RELEVANCE_PARENT_RUN"  # rank 0's parent run and store, for the ranks Lightning starts later
STORE_VARIABLE = "RELEVANCE_TRACKING_URI"
_finished_folds_of: tuple[str, str] | None = None  # (parent run id, tracking URI) this rank reads its folds from


def share_parent_with_ranks(run_id: str, tracking_uri: str) -> None:
    """Rank 0: name its parent run to the ranks Lightning starts at the first fit (they inherit the environment),
    so that a resumed run's other ranks skip the folds rank 0 reuses."""
    os.environ[PARENT_VARIABLE], os.environ[STORE_VARIABLE] = run_id, tracking_uri


def read_folds_of_rank_zero(config_fingerprint: str) -> str | None:
    """A rank > 0 started by Lightning: read finished folds from rank 0's parent run in the shared store (read
    only; this rank logs into a throwaway store), when that run was made from this same config; its id or None.
    Rank 0 is then waiting in its first fit for this rank, so every fold it reuses is FINISHED already, and no
    fold finishes without this rank: both see the same folds as finished."""
    global _finished_folds_of
    _finished_folds_of = None
    run_id, uri = os.environ.get(PARENT_VARIABLE), os.environ.get(STORE_VARIABLE)
    if not run_id or not uri:
        return None
    try:
        run = MlflowClient(uri).get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None
    if run.data.tags.get(FINGERPRINT_TAG) != config_fingerprint:  # another job of a multirun
        return None
    _finished_folds_of = (run_id, uri)
    return run_id


def load_fold(run_name: str, weights: Path | None) -> tuple[list[np.ndarray], FoldHealth] | None:
    """A FINISHED fold run named `run_name` under the active (resumed) parent run, or on a rank > 0 under rank 0's
    (read_folds_of_rank_zero): its scores and health, its weights copied to `weights`. None when the fold has to
    be trained."""
    if _finished_folds_of is not None:
        parent_id, uri = _finished_folds_of
    else:
        parent = mlflow.active_run()
        if parent is None:
            return None
        parent_id, uri = parent.info.run_id, mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    experiment = client.get_run(parent_id).info.experiment_id
    finished = f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'FINISHED'"
    runs = client.search_runs([experiment], f"{finished} and tags.`{FOLD_TAG}` = '{run_name}'", max_results=1)
    if not runs:  # a run from before folds carried their tag: they were named by it
        runs = client.search_runs([experiment], f"{finished} and attributes.run_name = '{run_name}'", max_results=1)
    if not runs:
        return None
    with tempfile.TemporaryDirectory() as folder:
        try:
            saved = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=runs[0].info.run_id, artifact_path=CHECKPOINT, dst_path=folder, tracking_uri=uri
                )
            )
        except (mlflow.exceptions.MlflowException, OSError):
            return None  # a fold from before checkpoints: train it again
        with np.load(saved / "scores.npz") as arrays:
            scored = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        health = FoldHealth(**json.loads((saved / "health.json").read_text()))
        if weights is not None:
            if not (saved / "weights").is_dir():
                return None
            shutil.rmtree(weights, ignore_errors=True)
            shutil.copytree(saved / "weights", weights)
    return scored, health
