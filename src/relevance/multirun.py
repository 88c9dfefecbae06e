"""A Hydra multirun (`python train.py -m backbone=a,b`) as a list of jobs that each end finished or failed: a failed
job is recorded and the next one runs; the multirun ends with a table of every job and exit code 1 if any failed.

Hydra runs each job inside its own error handling (a job's exception marks that job FAILED) but its basic sweeper
then re-raises the first failure, and our command-line edge used to end the process at a job's first user error.
Here each job writes one line to `<sweep dir>/jobs.jsonl` (from the process that ran it, so the joblib and SLURM
launchers' jobs are counted too), and the table is read back from that file."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

OUTCOMES = "jobs.jsonl"
FOLDER_VARIABLE = "RELEVANCE_MULTIRUN_DIR"
_sweep_dir: Path | None = None  # the multirun this process started (its table is printed here)
run_id: str | None = None  # the parent MLflow run of the job running in this process, once it has one

log = logging.getLogger(__name__)


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _reason(error: BaseException) -> str:
    """The error's first line; a library's error keeps its type's name (ours are sentences already)."""
    from relevance.errors import RelevanceError
    from relevance.ranks import RanksEnded

    text = str(error).strip().splitlines()
    if isinstance(error, (RelevanceError, RanksEnded)) and text:
        return text[0]
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _is_rank_zero() -> bool:
    from relevance.runtime import global_rank

    return global_rank() == 0


class JobTable(Callback):
    """Records each job's outcome and prints the table when the multirun ends (only on rank 0: the other ranks
    Lightning starts re-run the same command). Optuna studies keep their own record of failed trials."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        global _sweep_dir
        if _is_rank_zero():  # resolved once: `${now:...}` in the folder's name may resolve anew in each job
            _sweep_dir = Path(config.hydra.sweep.dir).resolve()
            os.environ[FOLDER_VARIABLE] = str(_sweep_dir)  # jobs in other processes (joblib) inherit it

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        global run_id
        run_id = None

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        from hydra.core.utils import JobStatus

        if config.sweep.get("trial") is not None or not in_multirun():
            return  # an Optuna trial's failure is the study's to record (sweep/sweeper.py); a plain run has no table
        failed = job_return.status == JobStatus.FAILED
        record(failed, _reason(job_return._return_value) if failed else "")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from relevance import interrupts

        failed = report()  # after every job ran, or after the sweeper re-raised the first failure
        if failed and interrupts.received is None:  # an interruption keeps its own exit code (143, 130)
            sys.exit(1)


def swept_overrides() -> list[str]:
    """This multirun job's values of the keys the command sweeps (`lr=1e-4,1e-3` or `choice(...)`), as
    `key=value` with the key's last part: what tells its run apart from its siblings'. Empty outside a multirun."""
    from hydra.core.hydra_config import HydraConfig

    if not in_multirun():
        return []
    swept = set()
    for arg in sys.argv[1:]:
        key, _, value = arg.partition("=")
        if value and not value.startswith("[") and ("," in value or "(" in value):
            swept.add(key.lstrip("+~"))
    chosen = []
    for override in HydraConfig.get().overrides.task or []:
        key, _, value = override.partition("=")
        if key.lstrip("+~") in swept:
            chosen.append(f"{key.lstrip('+~').split('.')[-1]}={value}")
    return chosen


def record(failed: bool, reason: str) -> None:
    """One line for the job running now (rank 0 of a multirun only), into its sweep folder."""
    from hydra.core.hydra_config import HydraConfig

    if not in_multirun() or not _is_rank_zero():  # a plain run imports nothing here (Lightning: 5 s)
        return
    hydra = HydraConfig.get()
    outcome = {
        "job": hydra.job.num,
        "overrides": " ".join(hydra.overrides.task or []),
        "status": "failed" if failed else "finished",
        "reason": reason,
        "run_id": run_id or "",
    }
    folder = Path(os.environ.get(FOLDER_VARIABLE) or hydra.sweep.dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / OUTCOMES, "a") as file:
        file.write(json.dumps(outcome) + "\n")


def outcomes(sweep_dir: Path) -> list[dict]:
    path = Path(sweep_dir) / OUTCOMES
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda row: row["job"])


def _swept(rows: list[dict]) -> list[str]:
    """Each job's overrides less those every job shares (the command's fixed settings)."""
    parts = [row["overrides"].split() for row in rows]
    shared = set.intersection(*(set(p) for p in parts)) if len(parts) > 1 else set()
    return [" ".join(o for o in p if o not in shared) or " ".join(p) for p in parts]


def table(rows: list[dict]) -> str:
    """Every job: its number, the overrides that tell it apart, finished or failed, its run id and the reason it
    failed."""
    failed = sum(row["status"] == "failed" for row in rows)
    rows = [row | {"overrides": swept} for row, swept in zip(rows, _swept(rows), strict=True)]
    width = max([len("overrides"), *(len(row["overrides"]) for row in rows)])
    lines = [
        f"multirun: {len(rows)} job(s), {len(rows) - failed} finished, {failed} failed",
        f"{'job':<4} {'overrides':<{width}}  {'status':<8}  {'run id':<32}  reason",
    ]
    for row in rows:
        lines.append(
            f"{row['job']:<4} {row['overrides']:<{width}}  {row['status']:<8}  {row['run_id'] or '-':<32}  "
            f"{row['reason']}".rstrip()
        )
    return "\n".join(lines)


def report() -> int:
    """Print the table of the multirun this process started; the number of failed jobs."""
    if _sweep_dir is None:
        return 0
    rows = outcomes(_sweep_dir)
    if rows:
        print("\n" + table(rows), file=sys.stderr)
    return sum(row["status"] == "failed" for row in rows)


def _last_run_id() -> str | None:
    import mlflow

    try:
        run = mlflow.last_active_run()
    except Exception:  # noqa: BLE001 - no store yet, or it cannot be read: no run to name
        return None
    return run.info.run_id if run is not None else None


@contextlib.contextmanager
def recording_run_id():
    """Around one job: remember the parent MLflow run it opened, finished or failed (none when it failed before
    opening one), for the table."""
    global run_id
    before = _last_run_id()
    try:
        yield
    finally:
        after = _last_run_id()
        run_id = after if after != before else None


@contextlib.contextmanager
def failures_exit():
    """Around the entry point: when the multirun's sweeper re-raises a failed job's error after every job ran,
    print the table and exit 1 instead of a stack trace (JobTable.on_multirun_end normally has by then)."""
    try:
        yield
    except Exception as error:
        if _sweep_dir is None or not outcomes(_sweep_dir):
            raise
        log.debug("multirun ended with a failed job", exc_info=error)
        report()
        sys.exit(1)
