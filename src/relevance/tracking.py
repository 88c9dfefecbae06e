"""MLflow at the edge: where the store is, the experiment, flattened params, and the registry."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from relevance.errors import RelevanceError


def default_tracking_uri(root: str | Path) -> str:
    return f"sqlite:///{Path(root).resolve() / 'mlruns' / 'mlflow.db'}"


def store_of(cfg: DictConfig) -> tuple[str, Path]:
    """A training config's tracking URI and artifact root: `tracking.uri` / `tracking.artifact_root`, or a sqlite
    store and an artifact folder under `<paths.root>/mlruns/`."""
    root = Path(cfg.paths.root)
    return (
        cfg.tracking.uri or default_tracking_uri(root),
        Path(cfg.tracking.artifact_root or root / "mlruns" / "artifacts"),
    )


def sqlite_lock(url: str):
    """For a `sqlite:///` URL: its folder made, and a file lock to hold while the store's tables are created (two
    workers starting together would race its schema); for any other URL, no lock."""
    if not url.startswith("sqlite:///"):
        return contextlib.nullcontext()
    database = Path(url.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{database}.lock")


def setup(tracking_uri: str, experiment: str, artifact_root: str | Path | None) -> str:
    """Point MLflow at the store and make sure the experiment exists (artifacts beside a local sqlite store)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    lock = sqlite_lock(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    with lock:
        client = MlflowClient()
        existing = client.get_experiment_by_name(experiment)
        if existing is None:
            location = Path(artifact_root).resolve().as_uri() if artifact_root else None
            client.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return experiment


def flatten(cfg: DictConfig) -> dict[str, str]:
    """`a.b.c` -> value, with lists as strings: MLflow params are flat key/value text."""
    flat: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = str(node)[:6000]

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def model_uri(run_id: str) -> str:
    """The URI of a training run's logged model (tagged by the pipeline; `runs:/` for older runs)."""
    try:
        tags = MlflowClient().get_run(run_id).data.tags
    except mlflow.exceptions.MlflowException:
        raise RelevanceError(
            f"there is no run {run_id} in {mlflow.get_tracking_uri()}; check the run id and --tracking-uri."
        ) from None
    return tags.get("relevance.model_uri", f"runs:/{run_id}/model")


def register(model_uri: str, name: str, alias: str | None) -> int:
    """Register `runs:/<run>/model` (or any model URI) under `name`; point `alias` at the new version."""
    try:
        version = mlflow.register_model(model_uri, name)
    except mlflow.exceptions.MlflowException as error:
        raise RelevanceError(f"could not register {model_uri} as {name!r}: {error.message}") from None
    if alias:
        MlflowClient().set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def best_run(experiment: str, metric: str) -> str:
    """Id of the finished parent run with the highest `metric` in `experiment`."""
    if MlflowClient().get_experiment_by_name(experiment) is None:
        raise RelevanceError(
            f"no experiment named {experiment!r} in {mlflow.get_tracking_uri()}; check --experiment and --tracking-uri."
        )
    found = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=f"tags.`relevance.level` = 'parent' and attributes.status = 'FINISHED' "
        f"and metrics.`{metric}` > -1",
        order_by=[f"metrics.`{metric}` DESC"],
        max_results=1,
    )
    if found.empty:
        raise RelevanceError(
            f"experiment {experiment!r} has no finished training run with metric {metric!r}; "
            f"run `python train.py` first."
        )
    return str(found.iloc[0]["run_id"])
