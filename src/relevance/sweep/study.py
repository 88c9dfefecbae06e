"""The Optuna study of a sweep: where it is stored, opening or resuming it by name, and why a trial failed."""

from __future__ import annotations

import contextlib
import logging
import warnings
import weakref
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from relevance import disk, interrupts
from relevance.errors import ConfigError, RelevanceError, TrainingDiverged
from relevance.tracking import sqlite_lock

log = logging.getLogger(__name__)

# Overrides that change how a run looks, not what it computes: a study may be resumed with different values.
NEUTRAL_OVERRIDES = ("progress", "sweep.", "tracking.", "hydra.", "paths.")
INTERRUPTED = "interrupted"
OVERRIDES_ATTR = "relevance.overrides"

_OPENED: weakref.WeakSet[RDBStorage] = weakref.WeakSet()  # every storage this process opened, for release_locks


@contextlib.contextmanager
def quiet_optuna():
    """Optuna warns that heartbeats and stale-trial checks are experimental and meant for Study.optimize;
    this sweeper uses both on purpose, through their public API."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
        yield


def storage_url(storage: str | None, root: str | Path) -> str:
    """The study's storage: `sweep.storage`, or a sqlite file under <root>/sweeps/ by default."""
    return storage or f"sqlite:///{(Path(root) / 'sweeps' / 'optuna.db').resolve()}"


def open_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None, max_retry: int = 1
) -> RDBStorage:
    """An RDB storage (sqlite, PostgreSQL, MySQL). With a heartbeat, trials of a worker that died are failed
    after `grace_period` seconds and their parameters queued again (at most `max_retry` times)."""
    lock = sqlite_lock(url)  # two local workers do not both create its tables
    # and they wait for each other's writes
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:///") else {}
    database = disk.local_path(url) if url.startswith("sqlite:///") else None
    interrupts.keep_sqlite_connections()
    try:
        with quiet_optuna(), lock, disk.removed_if_unfinished(database):
            retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if heartbeat_interval else None
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=retry,
            )
            _OPENED.add(storage)
            return storage
    except Exception as error:  # sqlalchemy's errors: no driver, bad URL, unreachable server, wrong password
        if disk.is_full(error):
            raise disk.full_error(error, url, what="the Optuna study") from None
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, ImportError) or "DB access module" in first_line:
            raise ConfigError(
                f"sweep.storage={url} needs its database driver; install it with `pip install -e "
                f".[postgres]` (PostgreSQL) or `.[mysql]` (MySQL), or use a sqlite:/// path."
            ) from None
        raise ConfigError(
            f"sweep.storage={url} cannot be opened ({first_line}); check the URL, the server and its credentials."
        ) from None


def release_locks() -> None:
    """A signal inside a write of this process (the sweeper's or an in-process trial's storage) can leave a session
    holding sqlite's write lock, so every later write waits its timeout and fails: close each storage's session and
    connection pool; new connections open on use."""
    for storage in list(_OPENED):
        with contextlib.suppress(Exception):
            storage.scoped_session.remove()
            storage.engine.dispose()


def neutral(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return any(key == prefix or key.startswith(prefix) for prefix in NEUTRAL_OVERRIDES)


def open_study(storage: RDBStorage, name: str, sampler, overrides: list[str]) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when it exists (resume, or a second worker). A study remembers the
    overrides it was started with, and refuses to continue under different ones: their trials would not
    compare. Returns the study and whether this call created it."""
    settings = sorted(o for o in overrides if not neutral(o))
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, direction="maximize")
        study.set_user_attr(OVERRIDES_ATTR, settings)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(
            f"sweep.study={name} exists in {storage.url} and minimizes; relevance maximizes F1, so "
            f"pick another sweep.study."
        )
    started_with = study.user_attrs.get(OVERRIDES_ATTR)
    if started_with is not None and sorted(started_with) != settings:
        raise ConfigError(
            f"sweep.study={name} was started with the overrides {started_with}, not {settings}; run "
            f"the same command to resume it, or give sweep.study=<new name> to start another."
        )
    return study, False


def trial_id(storage: RDBStorage, study_name: str, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def failure_reason(error: BaseException) -> str:
    """One line saying why a trial failed: divergence, out of memory, a config mistake, or the exception."""
    text = (str(error).strip().splitlines() or [""])[0][:500]
    if isinstance(error, TrainingDiverged):
        return f"diverged: {text}"
    oom = (
        isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError" or "out of memory" in text.lower()
    )
    if oom:
        return f"out of memory: {text or type(error).__name__}"
    if isinstance(error, RelevanceError):
        return f"error: {text}"
    return f"{type(error).__name__}: {text}"


def fail_reason_of(trial: FrozenTrial) -> str:
    """A failed trial's reason; a trial failed by the heartbeat check carries none: its worker stopped."""
    return trial.user_attrs.get("fail_reason", f"{INTERRUPTED}: its worker stopped (no heartbeat)")


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state, failures split into real failures and interruptions (which a resume retries)."""
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    interrupted = sum(fail_reason_of(t).startswith(INTERRUPTED) for t in failed)
    return {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": len(failed) - interrupted,
        "interrupted": interrupted,
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
    }
