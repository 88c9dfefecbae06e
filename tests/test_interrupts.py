"""What clusters do to a run: SIGTERM (timeout, docker stop, SLURM preemption) and Ctrl-C mid-fold end it with
128 + signal, one line and no traceback, and leave its MLflow runs KILLED rather than RUNNING or FAILED."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import PLUMBING, ROOT, tiny_demo


def start_training(tmp_path, cache_dir):
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RELEVANCE_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "train.py"),
            f"paths.root={tmp_path}",
            *PLUMBING,
            "backbone=tiny",
            "train.epochs=200",  # long enough to be interrupted mid-fold
            "progress=false",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def wait_for_fold(process, limit: float = 240.0) -> None:
    """Read the run's log until its first fold is training."""
    started = time.monotonic()
    for line in process.stdout:
        if "fold 1/" in line and "training on" in line:
            time.sleep(2)  # inside Trainer.fit
            return
        assert time.monotonic() - started < limit, "the first fold never started"
    pytest.fail(f"training ended before its first fold: {process.stderr.read()[-2000:]}")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_fold_ends_the_run_with_its_code_one_line_and_killed_runs(tmp_path, cache_dir, signum, code):
    process = start_training(tmp_path, cache_dir)
    try:
        wait_for_fold(process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr
    name = signal.Signals(signum).name
    assert stderr.count("interrupted by") == 1
    assert (
        f"interrupted by {name} during training; its MLflow runs are marked KILLED; run the same command again to "
        "resume it (finished folds are reused)." in stderr
    )
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("relevance").experiment_id])
    statuses = {run.data.tags.get("relevance.level", "parent"): run.info.status for run in runs}
    assert statuses == {"parent": "KILLED", "fold": "KILLED"}, statuses


def test_a_sigterm_mid_fold_in_process_raises_interrupted_at_once_and_restores_the_handlers(
    tmp_path, cache_dir, monkeypatch
):
    """pipeline.run called from Python (a notebook, a script): a real SIGTERM, sent to this process at the third
    training step, stops the fold at once (Lightning alone would finish the epoch, then raise SystemExit), the runs
    end KILLED, and the caller's signal handlers are back."""
    from relevance import build
    from relevance.interrupts import Interrupted
    from relevance.model.module import RelevanceModule
    from tests.conftest import compose_train

    steps = []
    train_step = RelevanceModule.training_step

    def step_then_signal(self, batch, batch_idx):
        steps.append(batch_idx)
        if len(steps) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return train_step(self, batch, batch_idx)

    monkeypatch.setattr(RelevanceModule, "training_step", step_then_signal)
    cfg = compose_train(["backbone=tiny", "train.epochs=3", "train.batch_size=2"], tmp_path, cache_dir)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(Interrupted, match="SIGTERM"):
        build.train(cfg)
    assert len(steps) <= 4, f"{len(steps) - 3} training steps ran after the signal"  # of 3 epochs of many steps
    assert {s: signal.getsignal(s) for s in before} == before
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("relevance").experiment_id])
    statuses = {run.data.tags.get("relevance.level", "parent"): run.info.status for run in runs}
    assert statuses == {"parent": "KILLED", "fold": "KILLED"}, statuses


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_ctrl_c_during_start_up_ends_quietly_with_130(tmp_path, cache_dir, delay):
    """Ctrl-C while train.py imports its libraries or composes its config: exit 130, no traceback."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), f"paths.root={tmp_path}", *PLUMBING, "backbone=tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RELEVANCE_CACHE": str(cache_dir)},
        cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores it
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and stderr.count("interrupted by") <= 1, stderr[-2000:]


def test_a_signal_that_lands_in_a_finalizer_is_delivered_again_and_never_reported_as_ignored(capfd):
    """Python drops an exception raised inside `__del__` ("Exception ignored in ..."): a SIGTERM whose handler runs
    there would be lost, and a sweep ran on to the end and exited 0. It comes again outside the finalizer."""
    from relevance import interrupts

    class SignalsInItsFinalizer:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler runs here, inside __del__, and its Interrupted is dropped

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stopped_after = None
    with pytest.raises(interrupts.Interrupted, match="SIGTERM"), interrupts.handled():
        SignalsInItsFinalizer()  # collected at once
        started = time.monotonic()
        try:
            time.sleep(5)
        finally:
            stopped_after = time.monotonic() - started
    assert stopped_after < 1.0  # delivered again within the 50 ms retry, not at the end of the sleep
    assert "Exception ignored" not in capfd.readouterr().err
    assert {s: signal.getsignal(s) for s in before} == before
    with interrupts.handled():  # a new block starts without the old signal
        interrupts.check()


def test_a_signal_already_received_stops_work_at_the_next_check_even_if_its_exception_was_caught():
    """Code that catches KeyboardInterrupt and goes on (a library's retry loop) cannot hide a signal either:
    the sweeper and each run ask `check()` between their stages."""
    from relevance import interrupts

    with interrupts.handled():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass  # swallowed by someone else
        with pytest.raises(interrupts.Interrupted, match="SIGINT"):
            interrupts.check()
        assert interrupts.exit_code() == 130


def test_what_an_interrupted_write_held_is_freed_before_the_store_is_written_again():
    """The cursor of a write a signal interrupted lives on in the traceback's frames (and in those of the exception
    it interrupted), and with it sqlite's lock on the store: the cleanup frees it before marking runs KILLED."""
    import weakref

    from relevance import interrupts

    class Cursor:
        pass

    made: list[weakref.ref] = []

    def write(cursor):
        try:
            raise OSError("the write under way")
        except OSError:
            raise KeyboardInterrupt from None  # the signal lands while that error is handled

    def interrupted_write():
        cursor = Cursor()
        made.append(weakref.ref(cursor))
        write(cursor)

    try:
        interrupted_write()
    except KeyboardInterrupt as error:
        alive = made[0]() is not None  # the traceback's frames keep it
        interrupts.free_what_it_held(error)
        assert alive and made[0]() is None


SIGNAL_INSIDE_A_MIGRATION = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from relevance import pipeline, tracking
from relevance.cli import exit_on_interrupt

in_batch = []

@event.listens_for(Engine, "before_cursor_execute")
def signal_inside_a_batch_migration(conn, cursor, statement, parameters, context, executemany):
    text = statement.strip().upper()
    if text.startswith("CREATE TABLE _ALEMBIC_TMP_"):
        in_batch.append(text)
    elif in_batch and text.startswith("DROP TABLE") and in_batch[-1] != "sent":
        in_batch.append("sent")
        print("SIGTERM sent inside a batch migration", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)

with exit_on_interrupt("start-up"):
    tracking.setup(f"sqlite:///{sys.argv[1]}/mlflow.db", "interrupted", None)
"""


def _run_script(script: str, folder, *arguments: str) -> subprocess.CompletedProcess:
    """`script` in its own Python process, with `folder` (made if missing) and `arguments` as its arguments."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", script, str(folder), *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        timeout=300,
    )


SIGNAL_AFTER_A_READ_INSIDE_A_WRITE = """
import sqlite3, sys
from mlflow.tracking import MlflowClient
from sqlalchemy import event
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Engine
from relevance import interrupts, tracking

folder, keep = sys.argv[1], sys.argv[2] == "keep"
tracking.setup(f"sqlite:///{folder}/mlflow.db", "interrupted", None)
if not keep:  # SQLAlchemy's own handling, for the contrast
    event.remove(SQLiteDialect, "handle_error", interrupts._keep_on_signal)
client = MlflowClient()
run = client.create_run(client.get_experiment_by_name("interrupted").experiment_id)
client.log_metric(run.info.run_id, "loss", 0.5)  # so that the next write reads a row back inside its transaction
state = {"wrote": False}

@event.listens_for(Engine, "after_cursor_execute")
def signal_after_a_read_inside_a_write(conn, cursor, statement, parameters, context, executemany):
    state["wrote"] |= statement.startswith("INSERT INTO metrics")
    if state["wrote"] and statement.startswith("SELECT") and "signalled" not in state:
        state["signalled"] = statement.split()[1]
        raise interrupts.Interrupted("SIGTERM")  # what our handler raises, at the bytecode after the read

try:
    client.log_metric(run.info.run_id, "loss", 0.4)
except interrupts.Interrupted as error:  # still handled: its frames, and the read's cursor, are alive
    probe = sqlite3.connect(f"{folder}/mlflow.db", timeout=0.5)
    try:
        probe.execute("BEGIN IMMEDIATE")
        print("writable after", state["signalled"])
    except sqlite3.OperationalError as locked:
        print(f"{locked} after", state["signalled"])
"""


def test_a_signal_after_a_read_inside_a_write_leaves_the_store_writable_at_once(tmp_path):
    """CI: a SIGTERM at 13 s of a sweep left runs RUNNING, as each write that should have marked them KILLED waited
    out sqlite's timeout on a lock nobody would release. SQLAlchemy takes a signal for a lost connection and closes
    it with the read's cursor still open, a zombie that holds the lock; relevance keeps sqlite connections, so the
    rollback frees it before anything else runs. Real MLflow store; the signal's exception is raised where the
    handler would raise it, after the statement ran."""
    kept = _run_script(SIGNAL_AFTER_A_READ_INSIDE_A_WRITE, tmp_path / "kept", "keep")
    assert kept.stdout.startswith("writable after"), kept.stdout + kept.stderr
    dropped = _run_script(SIGNAL_AFTER_A_READ_INSIDE_A_WRITE, tmp_path / "dropped", "drop")
    assert dropped.stdout.startswith("database is locked after"), dropped.stdout + dropped.stderr  # the case is real


def test_a_signal_inside_the_stores_migration_ends_with_its_code_one_line_and_no_half_made_store(tmp_path):
    """CI: a SIGTERM landed while a sweep created its MLflow store. Alembic, interrupted inside a batch, drops its
    temporary table in a bare `except:` on the connection the signal invalidated, and sqlalchemy's
    PendingRollbackError replaced the interruption: exit 1 and a 60-line traceback instead of 143. The signal is
    sent here from inside sqlalchemy's execute of the batch's DROP TABLE, where CI's landed."""
    process = _run_script(SIGNAL_INSIDE_A_MIGRATION, tmp_path)
    assert "SIGTERM sent inside a batch migration" in process.stderr
    assert process.returncode == 143, process.stderr[-3000:]
    assert "Traceback" not in process.stderr and process.stderr.count("interrupted by SIGTERM") == 1
    assert not (tmp_path / "mlflow.db").exists()  # a half-migrated store would refuse every later start


SIGNAL_WHILE_A_RUN_ENDS = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from relevance import tracking
from relevance.cli import exit_on_interrupt

sent = []

@event.listens_for(Engine, "before_cursor_execute")
def signal_while_the_fold_run_is_marked_finished(conn, cursor, statement, parameters, context, executemany):
    if statement.strip().upper().startswith("UPDATE RUNS") and "FINISHED" in str(parameters) and not sent:
        sent.append(True)
        print("SIGTERM sent while a run is marked FINISHED", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)

with exit_on_interrupt("training"):
    tracking.setup(f"sqlite:///{sys.argv[1]}/mlflow.db", "interrupted", None)
    with tracking.start_run(run_name="parent"):
        with tracking.start_run(run_name="parent/fold-0", nested=True):
            pass
"""


def test_a_signal_while_a_run_is_marked_finished_leaves_it_killed_not_running(tmp_path):
    """CI: a SIGTERM landed inside mlflow.end_run's write, after MLflow had taken the fold run off its stack: the
    parent was marked KILLED, the fold run stayed RUNNING for ever. The signal is sent here from inside that write."""
    from mlflow.tracking import MlflowClient

    process = _run_script(SIGNAL_WHILE_A_RUN_ENDS, tmp_path)
    assert "SIGTERM sent while a run is marked FINISHED" in process.stderr
    assert process.returncode == 143, process.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("interrupted").experiment_id])
    assert {run.info.run_name: run.info.status for run in runs} == {"parent": "KILLED", "parent/fold-0": "KILLED"}


SWALLOWED_THEN_FAILED = """
import os, signal, time
from relevance.cli import exit_on_interrupt

with exit_on_interrupt("start-up"):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except KeyboardInterrupt:
        pass  # a library that swallows it
    raise RuntimeError("the state the signal left")
"""


def test_an_error_after_a_swallowed_signal_ends_as_the_signal_with_that_errors_line():
    process = subprocess.run([sys.executable, "-c", SWALLOWED_THEN_FAILED], capture_output=True, text=True, timeout=120)
    assert process.returncode == 143, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    assert "after the signal: RuntimeError: the state the signal left" in process.stderr
    assert process.stderr.count("interrupted by SIGTERM") == 1


def test_an_error_raised_while_cleaning_up_after_a_signal_counts_as_the_signal():
    from relevance import interrupts

    with interrupts.handled():
        assert not interrupts.was_interrupted(RuntimeError("no signal was received"))
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except KeyboardInterrupt:
            try:
                raise RuntimeError("a library's cleanup failed on the connection the signal invalidated")
            except RuntimeError as cleanup:
                assert interrupts.was_interrupted(cleanup)
        assert not interrupts.was_interrupted(ValueError("an error of its own, after the signal"))


def test_a_run_whose_process_was_killed_9_is_marked_failed_at_the_next_start(tmp_path):
    from mlflow.tracking import MlflowClient

    from relevance import tracking

    uri = f"sqlite:///{tmp_path}/m.db"
    dies = (
        "import os, signal, sys; from relevance import tracking; "
        f"tracking.setup({uri!r}, 'relevance', {str(tmp_path / 'a')!r}); "
        "opened = tracking.start_run(run_name='doomed'); run = opened.__enter__(); print(run.info.run_id, flush=True); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    done = subprocess.run([sys.executable, "-c", dies], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    run_id = done.stdout.split()[0]
    tracking.setup(uri, "relevance", tmp_path / "a")
    assert MlflowClient().get_run(run_id).info.status == "RUNNING"  # what kill -9 leaves
    with tracking.start_run(run_name="alive"):  # a live run of this process is never touched
        assert tracking.fail_abandoned_runs("relevance") == [run_id]
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["relevance.abandoned"] == "true"


RESUMABLE = [
    *tiny_demo(240, folds=3),
    "train.epochs=20",
    "progress=false",
    "train.checkpoint_minutes=0.02",  # progress saved every 1.2 s: several saves a fold, with time between them
]


def train(tmp_path, cache_dir, *extra, wait_for: str | None = None, and_file: str | None = None):
    """`python train.py` in `tmp_path`; with `wait_for`, killed with SIGKILL once that text is logged (and a
    file matching the glob `and_file` exists under `tmp_path`)."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RELEVANCE_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(ROOT / "train.py"), f"paths.root={tmp_path}", *PLUMBING, *RESUMABLE, *extra]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    log = []
    for line in process.stdout:
        log.append(line)
        if wait_for and wait_for in line:
            started = time.monotonic()
            while and_file and not list(tmp_path.glob(and_file)):
                assert time.monotonic() - started < 240, f"no {and_file} was written"
                time.sleep(0.05)
            time.sleep(0.1)  # killed just after a whole save, not during the next one (saves are 1.2 s apart)
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=600)
    return process.returncode, "".join(log)


def parent_metrics(tmp_path) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("relevance").experiment_id
    return client.search_runs([experiment], "tags.`relevance.level` = 'parent'")


def test_a_run_killed_9_in_fold_2_of_3_resumes_fold_2_from_its_checkpoint_with_the_same_scores(tmp_path, cache_dir):
    """Fold 1 is reused, fold 2 continues from the step its progress file holds (mid-epoch: the optimizer, the
    scheduler, the losses and the position in the epoch restored), and the out-of-fold and dev metrics equal an
    uninterrupted run's to the last digit."""
    reference = tmp_path / "reference"
    reference.mkdir()
    code, _ = train(reference, cache_dir)
    assert code == 0
    (expected,) = parent_metrics(reference)

    killed = tmp_path / "killed"
    killed.mkdir()
    code, _ = train(
        killed, cache_dir, wait_for="fold 2/3: training", and_file="checkpoints/*/fold-1/last.ckpt.complete"
    )
    assert code == -signal.SIGKILL
    code, log = train(killed, cache_dir)  # the same command again
    assert code == 0, log[-3000:]
    assert "resuming run" in log and "fold 1/3: finished before the interruption; reused" in log
    assert "fold 1/3: training" not in log and "fold 2/3: training" in log
    step = re.search(r"fold 2/3: continuing from its checkpoint at step (\d+)", log)
    assert step and int(step.group(1)) > 0, log[-3000:]
    (resumed,) = parent_metrics(killed)  # the same parent run, now finished
    assert resumed.info.status == "FINISHED"
    scores = [k for k in expected.data.metrics if k.startswith(("oof_", "dev_"))]
    assert "oof_best_f1" in scores
    assert {k: resumed.data.metrics[k] for k in scores} == {k: expected.data.metrics[k] for k in scores}
    assert not (killed / "checkpoints").exists()  # a finished run keeps no progress files
