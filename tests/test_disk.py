"""A full disk loses nothing that was finished (issue 30, item 3). The stand-in tests make MLflow's own artifact
copy and store migration fail as a full disk does (ENOSPC; sqlite's "database or disk is full"), on the real
pipeline, store and tiny model; the tmpfs test fills a real 2 MB disk, where the machine lets it mount one."""

import errno
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest
import sqlalchemy
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from mlflow.tracking import MlflowClient

from relevance import disk, tracking
from tests.conftest import PLUMBING, ROOT, compose_train, tiny_demo

SMALL = tiny_demo(120, dev=40, folds=2)


def runs_by_level(tmp_path) -> dict[str, list]:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    found = client.search_runs([client.get_experiment_by_name("relevance").experiment_id])
    levels: dict[str, list] = {}
    for run in found:
        levels.setdefault(run.data.tags.get("relevance.level"), []).append(run)
    return levels


def test_a_disk_that_fills_while_the_model_is_logged_keeps_the_folds_and_leaves_no_partial_model(
    tmp_path, cache_dir, monkeypatch, caplog
):
    """The model's copy into the artifact folder fails half way with ENOSPC: one DiskFull sentence naming the
    artifact folder, the run FAILED with that reason, the folds FINISHED with their checkpoints, no model folder or
    entry left; the same command afterwards reuses both folds and finishes."""
    from relevance import build

    copy = LocalArtifactRepository.log_artifacts

    def fills_up_on_models(self, local_dir, artifact_path=None):
        if "/models/" not in self.artifact_dir:
            return copy(self, local_dir, artifact_path)
        target = Path(self.artifact_dir)
        target.mkdir(parents=True, exist_ok=True)
        (target / "MLmodel").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(local_dir), None, str(target / "python_model.pkl"))

    cfg = compose_train(SMALL, tmp_path, cache_dir)
    monkeypatch.setattr(LocalArtifactRepository, "log_artifacts", fills_up_on_models)
    with pytest.raises(disk.DiskFull) as raised:
        build.train(cfg)
    message = str(raised.value)
    assert f"the disk holding {tmp_path / 'mlruns' / 'artifacts'} is full" in message
    assert "run the same command again: the folds that finished are reused" in message
    levels = runs_by_level(tmp_path)
    (parent,) = levels["parent"]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["relevance.fail_reason"] == message
    assert [run.info.status for run in levels["fold"]] == ["FINISHED", "FINISHED"]
    models = tmp_path / "mlruns" / "artifacts" / "models"
    assert not models.exists() or not list(models.iterdir())  # the half-copied model is gone
    assert not mlflow.search_logged_models(experiment_ids=[parent.info.experiment_id], output_format="list")

    monkeypatch.setattr(LocalArtifactRepository, "log_artifacts", copy)
    with caplog.at_level(logging.INFO):
        summary = build.train(compose_train(SMALL, tmp_path, cache_dir))
    assert summary["run_id"] == parent.info.run_id  # the same run, resumed
    assert caplog.text.count("finished before the interruption; reused") == 2
    assert runs_by_level(tmp_path)["parent"][0].info.status == "FINISHED"
    assert summary["model_uri"]


def test_a_store_made_on_a_full_disk_is_not_left_half_migrated(tmp_path, monkeypatch):
    """The store's tables are made, then a migration finds the disk full: the database file goes, so that the
    next start makes it afresh instead of failing on a half-migrated schema."""
    import mlflow.store.db.utils as store_utils

    def disk_full_mid_migration(engine):
        raise sqlalchemy.exc.OperationalError("ALTER TABLE", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(store_utils, "_upgrade_db", disk_full_mid_migration)
    database = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{database}"
    with pytest.raises(disk.DiskFull, match=f"the disk holding {database.parent} is full.*the MLflow store"):
        tracking.setup(uri, f"relevance-{uuid.uuid4().hex}", tmp_path / "artifacts")
    assert not database.exists()
    start = f"from relevance import tracking; tracking.setup({uri!r}, 'relevance', {str(tmp_path / 'artifacts')!r})"
    done = subprocess.run([sys.executable, "-c", start], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # the next start makes the store afresh
    assert database.is_file()


def test_folders_with_little_room_are_named_before_the_run(tmp_path, caplog):
    folders = {"the MLflow store": tmp_path / "mlruns" / "mlflow.db", "the artifact folder": None}
    with caplog.at_level(logging.WARNING):
        warnings = disk.warn_if_low(folders, min_free_gb=1e9)
    assert len(warnings) == 1 and str(tmp_path) in warnings[0] and "tracking.min_free_gb" in warnings[0]
    assert disk.warn_if_low(folders, min_free_gb=0) == []


def test_full_disk_errors_are_recognised_through_the_libraries_wrapping(tmp_path):
    wrapped = mlflow.exceptions.MlflowException("(sqlite3.OperationalError) database or disk is full")
    assert disk.is_full(wrapped)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "a", None, str(tmp_path / "x" / "y.bin"))
        except OSError as error:
            raise RuntimeError("copy failed") from error
    except RuntimeError as outer:
        assert disk.is_full(outer)
        assert disk.where(outer, None, roots=(tmp_path,)) == tmp_path
    assert not disk.is_full(OSError(errno.EACCES, "Permission denied"))


def _can_mount_tmpfs(folder: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if done.returncode:
        return False
    subprocess.run(["umount", str(folder)], check=True)
    return True


def test_a_real_full_disk_ends_the_run_in_one_line_and_the_rerun_resumes(tmp_path, cache_dir):
    """train.py with its store on a 2 MB tmpfs: it fills while the model is copied. One `error:` line and exit
    code 2 (not about 620 lines of tracebacks), the run FAILED, no model folder; after room is made, the same
    command reuses both folds."""
    mounted = tmp_path / "mlruns"
    mounted.mkdir()
    if not _can_mount_tmpfs(mounted):
        pytest.skip("this machine does not let the tests mount a tmpfs (needs root); the stand-in tests cover it")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2000k", "tmpfs", str(mounted)], check=True)
    try:
        command = [sys.executable, str(ROOT / "train.py"), f"paths.root={tmp_path}", *PLUMBING, "backbone=tiny"]
        command += ["progress=false", f"paths.cache={cache_dir}"]
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        full = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
        assert full.returncode == 2, full.stderr[-3000:]
        assert "Traceback" not in full.stderr + full.stdout
        errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"the disk holding {mounted / 'artifacts'} is full" in errors[0], full.stderr
        assert "has 0.0 GB free, under tracking.min_free_gb=5" in full.stdout + full.stderr  # warned at start
        levels = runs_by_level(tmp_path)
        assert [run.info.status for run in levels["parent"]] == ["FAILED"]
        assert [run.info.status for run in levels["fold"]] == ["FINISHED", "FINISHED"]
        assert not list((mounted / "artifacts").glob("models/m-*"))

        subprocess.run(["mount", "-o", "remount,size=30m", str(mounted)], check=True)
        again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
        assert (again.stdout + again.stderr).count("finished before the interruption; reused") == 2
    finally:
        subprocess.run(["umount", "-l", str(mounted)], check=False)
