"""MLflow at the edge: where the store is, the experiment, flattened params, and the registry."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from relevance import disk, interrupts
from relevance.errors import ConfigError, RelevanceError

log = logging.getLogger(__name__)


def default_tracking_uri(root: str | Path) -> str:
    return f"sqlite:///{Path(root).resolve() / 'mlruns' / 'mlflow.db'}"


STORE_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_store(uri: str, timeout: float = 3.0) -> None:
    """Before any data is read: the tracking URI's scheme is one MLflow serves, a sqlite store's folder can be
    written, a tracking server answers within `timeout` seconds (MLflow itself retries for minutes)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    scheme = urllib.parse.urlparse(uri).scheme.split("+")[0] if "://" in uri else "file"
    if scheme not in STORE_SCHEMES:
        raise ConfigError(
            f"tracking.uri={uri}: {scheme}:// is not a tracking store; use sqlite:///<file>, http://<host>:<port> "
            f"or a database URL (postgresql://, mysql://)."
        )
    if scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        raise ConfigError(
            f"tracking.uri={uri}: MLflow 3 refuses folder stores (its file backend is in maintenance mode); use "
            f"sqlite:///<folder>/mlflow.db (`mlflow migrate-filestore` moves an existing folder store into one), "
            f"or set MLFLOW_ALLOW_FILE_STORE=true to keep the folder."
        )
    if scheme == "sqlite":
        folder = Path(uri.removeprefix("sqlite:///")).parent
        existing = disk.existing(folder)
        try:  # a file made and removed at once: os.access says yes to root even where nothing can be written
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as error:
            raise ConfigError(
                f"tracking.uri={uri}: {existing} is not writable ({error.strerror}); put the store in a folder you own."
            ) from None
    if scheme in ("http", "https"):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout)
        except urllib.error.HTTPError:
            pass  # it answered: a server (perhaps behind a proxy without /health)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ConfigError(
                f"tracking.uri={uri} does not answer ({reason}); start the server (mlflow server ...) or fix the "
                f"address."
            ) from None


def existing_store(uri: str) -> str:
    """For commands that only read a store (register, predict): a sqlite store must already exist, so a wrong
    folder is named instead of an empty store being made there."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise RelevanceError(
            f"there is no tracking store at {uri.removeprefix('sqlite:///')}; run train.py here first, or give "
            f"the store that holds your runs (--tracking-uri / tracking_uri=)."
        )
    return uri


def store_of(uri: str | None, artifact_root: str | None, root: str | Path) -> tuple[str, Path]:
    """The tracking URI and artifact root a training config names (`tracking.uri`, `tracking.artifact_root`), or
    when null a sqlite store and an artifact folder under `<paths.root>/mlruns/`."""
    root = Path(root)
    return uri or default_tracking_uri(root), Path(artifact_root or root / "mlruns" / "artifacts")


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
    database = disk.local_path(tracking_uri) if tracking_uri.startswith("sqlite:///") else None
    interrupts.keep_sqlite_connections()
    try:
        lock = sqlite_lock(tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        with lock, disk.removed_if_unfinished(database):  # no half-migrated store left behind
            client = MlflowClient()
            existing = client.get_experiment_by_name(experiment)
            if existing is None:
                location = Path(artifact_root).resolve().as_uri() if artifact_root else None
                client.create_experiment(experiment, artifact_location=location)
        mlflow.set_experiment(experiment)
    except Exception as error:
        if disk.is_full(error):
            raise disk.full_error(error, tracking_uri, what="the MLflow store") from error
        raise
    return experiment


@contextlib.contextmanager
def start_run(**kwargs):
    """`mlflow.start_run`, except that an interrupted run (SIGTERM, Ctrl-C) ends KILLED rather than FAILED, a run
    that found its disk full ends with one sentence (disk.DiskFull) rather than MLflow's tracebacks, and the run
    says which process owns it (a run whose process was killed -9 is found by `fail_abandoned_runs`; so is one
    whose store was too full to record its end)."""
    kwargs["tags"] = {**owner_tags(), **(kwargs.get("tags") or {})}
    run = mlflow.start_run(**kwargs)
    try:
        yield run
    except BaseException as error:
        interrupted = interrupts.was_interrupted(error)
        full = None
        if disk.is_full(error):
            roots = artifact_roots(run)
            disk.remove_partial_write(error, roots)  # frees room to record the end
            full = disk.full_error(error, mlflow.get_tracking_uri(), roots)
        if interrupted:
            release_store_locks(error)
        with contextlib.suppress(Exception):  # the reason is a courtesy: never hide the error itself
            tell_why_it_ended(run.info.run_id, full or error, interrupted)
        try:
            mlflow.end_run("KILLED" if interrupted else "FAILED")
        except Exception as ending:  # noqa: BLE001 - a store too full to record it: the next start marks it FAILED
            log.debug("run %s could not be marked ended: %s", run.info.run_id, ending)
        if full is not None and full is not error:
            raise full from error
        raise
    try:
        mlflow.end_run()
    except BaseException as error:
        if interrupts.was_interrupted(error):  # inside end_run's write: the run is off MLflow's stack, not ended
            release_store_locks(error)
            with contextlib.suppress(Exception):
                MlflowClient().set_terminated(run.info.run_id, "KILLED")
        elif isinstance(error, Exception) and disk.is_full(error):
            raise disk.full_error(error, mlflow.get_tracking_uri(), artifact_roots(run)) from error
        raise


def release_store_locks(interruption: BaseException) -> None:
    """A signal in the middle of a sqlite write can leave a connection of this process holding the store's lock
    ("database is locked" for every later write, CI): free what the interruption held and close the pool; new
    connections open on use."""
    interrupts.free_what_it_held(interruption)
    with contextlib.suppress(Exception):
        MlflowClient()._tracking_client.store.engine.dispose()


def artifact_roots(run) -> tuple[Path, ...]:
    """The local folder that holds the experiment's artifacts (runs' and models'), from a run's artifact URI
    (`<root>/<run id>/artifacts`); none for a server's store."""
    path = disk.local_path(run.info.artifact_uri)
    return (path.parent.parent,) if path is not None else ()


def child_run_name(part: str) -> str:
    """A fold's (or refit's) run name: its parent's name first, so that charts comparing several runs' folds tell
    them apart (`tiny-qc-query_group/fold-0`, not six runs named `fold-0`)."""
    parent = mlflow.active_run()
    return f"{parent.info.run_name}/{part}" if parent is not None and parent.info.run_name else part


def unique_run_name(name: str, experiment: str) -> str:
    """`name`, or `name-2`, `name-3`... when the experiment already holds runs of that name."""
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        return name
    quoted = name.replace("'", "\\'")
    taken = {
        run.info.run_name
        for run in MlflowClient().search_runs(
            [found.experiment_id], f"attributes.run_name LIKE '{quoted}%'", max_results=50000
        )
    }
    number = 1
    while (candidate := name if number == 1 else f"{name}-{number}") in taken:
        number += 1
    return candidate


def tell_why_it_ended(run_id: str, error: BaseException, interrupted: bool) -> None:
    """A failed or killed run's one-line reason, as tag `relevance.fail_reason` and as its description in the UI
    (kept when a more precise one is already there, such as a sweep trial's)."""
    if interrupted:
        reason = f"interrupted ({interrupts.signal_name()}); run the same command again to resume"
    else:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:500]
        if not isinstance(error, RelevanceError):
            reason = f"{type(error).__name__}: {reason}"
    client = MlflowClient()
    tags = client.get_run(run_id).data.tags
    if "relevance.fail_reason" not in tags:
        client.set_tag(run_id, "relevance.fail_reason", reason)
    client.set_tag(run_id, "mlflow.note.content", f"**{'Killed' if interrupted else 'Failed'}**: {reason}")


def owner_tags() -> dict[str, str]:
    """Which process on which machine a run belongs to, so a later start can tell a dead run from a live one."""
    import socket

    return {"relevance.host": socket.gethostname(), "relevance.pid": str(os.getpid())}


def fail_abandoned_runs(experiment: str) -> list[str]:
    """Runs of `experiment` left RUNNING by a process of this machine that no longer exists (kill -9, the OOM
    killer) are marked FAILED; returns their ids. Runs of other machines, or of live processes, are left alone."""
    import socket

    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    host = socket.gethostname()
    abandoned = []
    for run in client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if tags.get("relevance.host") != host or not tags.get("relevance.pid", "").isdigit():
            continue
        try:
            os.kill(int(tags["relevance.pid"]), 0)
        except ProcessLookupError:
            client.set_tag(run.info.run_id, "relevance.abandoned", "true")
            client.set_terminated(run.info.run_id, "FAILED")
            abandoned.append(run.info.run_id)
        except PermissionError:
            pass  # alive, another user's
    return abandoned


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
    if "relevance.model_uri" in tags:
        return tags["relevance.model_uri"]
    if not MlflowClient().list_artifacts(run_id, "model"):  # a run from before the tag, or one with no model
        raise RelevanceError(
            f"run {run_id} logged no model (it ran with tracking.log_model=false, or did not finish); "
            f"register a finished training run."
        )
    return f"runs:/{run_id}/model"


def log_hydra_output() -> None:
    """Hydra's record of this job (the composed config, its overrides, Hydra's own settings) and its log file, into
    the active run's `hydra/` folder; nothing when the config was composed in code rather than by Hydra's main."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra = HydraConfig.get()
    except ValueError:
        return
    output = Path(hydra.runtime.output_dir)
    if hydra.output_subdir and (output / hydra.output_subdir).is_dir():
        mlflow.log_artifacts(str(output / hydra.output_subdir), "hydra")
    log_file = output / f"{hydra.job.name}.log"
    if log_file.is_file():
        mlflow.log_artifact(str(log_file), "hydra")


CARD_FILE = "model_card.md"  # the parent run's model card (relevance.serving.model_card)


def log_datasets(files: dict[tuple[str, str], Path]) -> None:
    """Each data file the run reads, as an MLflow dataset of the active run (its path as source, a digest of its
    bytes, so runs on different data are told apart in the UI); `files` maps (task, train|dev) to a path."""
    import hashlib

    from mlflow.data.dataset_source_registry import get_registered_sources
    from mlflow.data.meta_dataset import MetaDataset

    # a local path, named as such: resolving it asks every registered source, and MLflow registers the local one
    # twice, which warns that the path "can be interpreted in multiple ways"
    local = next(source for source in get_registered_sources() if source.__name__ == "LocalArtifactDatasetSource")
    for (task, which), path in files.items():
        if not Path(path).is_file():
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as data:  # in blocks: a big file costs no memory
            for block in iter(lambda: data.read(1 << 20), b""):
                digest.update(block)
        source = local._resolve(str(Path(path).resolve()))
        dataset = MetaDataset(source, name=Path(path).name, digest=digest.hexdigest()[:8])
        mlflow.log_input(dataset, context="training" if which == "train" else "evaluation", tags={"task": task})


def register(model_uri: str, name: str, alias: str | None) -> int:
    """Register `runs:/<run>/model` (or any model URI) under `name`; point `alias` at the new version, whose
    description is the training run's model card."""
    client = MlflowClient()
    new_name = not client.search_registered_models(f"name = '{name}'")
    try:
        version = mlflow.register_model(model_uri, name)
    except mlflow.exceptions.MlflowException as error:
        if new_name and client.search_registered_models(f"name = '{name}'"):
            client.delete_registered_model(name)  # no empty registered model left behind
        raise RelevanceError(f"could not register {model_uri} as {name!r}: {error.message}") from None
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    if version.run_id:
        from relevance.serving.model_card import split_front_matter

        with contextlib.suppress(mlflow.exceptions.MlflowException, OSError):  # a run from before model cards
            card = mlflow.artifacts.load_text(f"runs:/{version.run_id}/{CARD_FILE}")
            facts, body = split_front_matter(card)
            client.update_model_version(name, version.version, description=body)
            for key, value in version_tags(facts).items():
                client.set_model_version_tag(name, version.version, key, value)
    return int(version.version)


def version_tags(facts: dict) -> dict[str, str]:
    """The card's metadata as a registered version's tags: base model, languages, and each metric
    (`metric.out_of_fold_f1_best_threshold`: MLflow's tag keys take no commas)."""
    tags = {key: str(facts[key]) for key in ("base_model", "library_name") if key in facts}
    if facts.get("language"):
        tags["languages"] = ",".join(facts["language"])
    for index in facts.get("model-index") or []:
        for result in index.get("results", []):
            for metric in result.get("metrics", []):
                tags["metric." + re.sub(r"[^a-z0-9]+", "_", metric["name"].lower()).strip("_")] = str(metric["value"])
    return tags


def log_report(summary: dict, by_language: dict, data, oof, plots_dir: Path) -> None:
    """The run's metrics (each value once), its per-language table, its plots and every training row's out-of-fold
    score, to the active MLflow run."""
    import pandas as pd

    from relevance.evaluation.reporting import distinct_metrics

    mlflow.log_metrics(distinct_metrics(summary))
    table = [dict(row, scored=name) for name, rows in by_language.items() for row in rows]
    mlflow.log_table(pd.DataFrame(table), "language_f1.json")
    mlflow.log_artifacts(str(plots_dir), "plots")
    mlflow.log_table(
        {
            "id": [r.id for r in data.records],
            "task": [r.task for r in data.records],
            "language": data.languages,
            "fold": data.folds.tolist(),
            "label": data.labels.tolist(),
            "score": oof.tolist(),
        },
        "oof_scores.json",
    )
