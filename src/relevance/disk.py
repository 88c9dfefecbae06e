"""Full disks. Before a run: a warning when a folder it writes to (the MLflow store, its artifacts, the progress
checkpoints) has less than `tracking.min_free_gb` free. During one: a write that finds no room (ENOSPC from a copy,
"database or disk is full" from sqlite) ends it with one sentence naming the folder, instead of the dozen MLflow
and SQLAlchemy tracebacks it would print, and what it left half-written is removed."""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from relevance.errors import RelevanceError

log = logging.getLogger(__name__)
FULL = (errno.ENOSPC, errno.EDQUOT)
SQLITE_FULL = "database or disk is full"


class DiskFull(RelevanceError):
    """A write found no room; the message names the folder and what to do."""


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def is_full(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from or during, is a write that found no room."""
    return any(
        isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in FULL) or SQLITE_FULL in str(e)
        for e in _chain(error)
    )


def existing(path: Path) -> Path:
    """`path`, or the nearest folder above it that exists."""
    return next((p for p in (path, *path.parents) if p.exists()), Path("/"))


def free_gb(path: Path) -> float:
    return shutil.disk_usage(existing(Path(path))).free / 1e9


def local_path(uri: str | Path | None) -> Path | None:
    """The local file a `sqlite:///` or `file://` URI (or a plain path) names; None for a server or database."""
    if uri is None:
        return None
    text = str(uri)
    if text.startswith("sqlite:///"):
        return Path(text.removeprefix("sqlite:///"))
    if text.startswith("file:"):
        return Path(unquote(urlparse(text).path))
    return None if "://" in text else Path(text)


def _written(error: BaseException) -> Path | None:
    """The file a failed write was going to, as the OSError names it (a copy names its destination second)."""
    for e in _chain(error):
        if isinstance(e, OSError) and e.errno in FULL and (e.filename2 or e.filename):
            return Path(e.filename2 or e.filename)
    return None


def where(error: BaseException, store_uri: str | None, roots: tuple[Path, ...] = ()) -> Path | None:
    """The folder the failed write was going to (one of `roots` when it lies inside one: the artifact folder
    rather than a run's subfolder), else the sqlite store's folder."""
    written = _written(error)
    if written is not None:
        return next((root for root in roots if written.is_relative_to(root)), existing(written.parent))
    store = local_path(store_uri)
    return existing(store.parent) if store is not None else None


def remove_partial_write(error: BaseException, roots: tuple[Path, ...]) -> None:
    """The half-written file of a failed copy into one of `roots`: gone, which also frees room to record the
    run's end."""
    written = _written(error)
    if written is not None and any(written.is_relative_to(root) for root in roots) and written.is_file():
        written.unlink(missing_ok=True)


def full_error(
    error: BaseException, store_uri: str | None, roots: tuple[Path, ...] = (), what: str = "the run"
) -> DiskFull:
    """One sentence for a write that found no room: the folder, its free space, and how to go on."""
    if isinstance(error, DiskFull):
        return error
    folder = where(error, store_uri, roots)
    place = f"the disk holding {folder} is full ({free_gb(folder) * 1000:.0f} MB free)" if folder else "a disk is full"
    again = ": the folds that finished are reused." if what == "the run" else "."
    return DiskFull(
        f"{place}: no room was left to write {what}. Free space there, or point tracking.uri and "
        f"tracking.artifact_root (sweep.storage, paths.checkpoints) at a larger disk, then run the same command "
        f"again{again}"
    )


def warn_if_low(folders: dict[str, Path | None], min_free_gb: float) -> list[str]:
    """A warning for each folder a run writes to whose disk has less than `min_free_gb` GB free; the warnings."""
    warnings = []
    for role, folder in folders.items():
        if folder is None or not min_free_gb:
            continue
        free = free_gb(folder)
        if free < min_free_gb:
            warnings.append(
                f"{role} {existing(Path(folder))} has {free:.1f} GB free, under tracking.min_free_gb={min_free_gb}: "
                f"the run may fill it (adapters, checkpoints and the logged model of a 12B LoRA run take a few GB)"
            )
    for warning in warnings:
        log.warning(warning)
    return warnings


def remove_local(uri: str | None) -> None:
    """Remove a half-written local artifact folder (a partial model, a fold's partial checkpoint)."""
    path = local_path(uri)
    if path is not None and path.exists():
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextlib.contextmanager
def removed_if_unfinished(database: Path | None):
    """A store file created inside the block is removed if the block fails (a full disk while its tables were
    made): a half-migrated store would otherwise refuse every later start."""
    if database is None or database.exists():
        yield
        return
    try:
        yield
    except BaseException:
        for leftover in (database, Path(f"{database}-journal"), Path(f"{database}-wal"), Path(f"{database}-shm")):
            leftover.unlink(missing_ok=True)
        raise
