"""What the ranks of one multi-rank run do together: share a folder only rank 0 wrote, and end at once when one fails.

A failure on one rank ends every rank at once, never a hang until the collective timeout.

The other ranks are waiting in a collective (a gradient all-reduce, the scores' all-gather) for the rank that
failed; nothing reaches them from Python. Lightning starts ranks 1..N-1 by re-running the command and watches them
from rank 0: when one of them exits with an error it kills every rank (SIGKILL). So a failing rank > 0 exits at once
(its Hydra multirun must not go on to the next job, which would pair its collectives with the wrong job's), and a
failing rank 0 kills the ranks it started before it reports. Under torchrun or srun each rank exits and the
launcher ends the others."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from relevance.runtime import global_rank


def share_folder(folder: Path) -> None:
    """Give every rank the files rank 0 wrote into `folder` (rank 0 alone saves a trained adapter, and each rank
    has its own scratch folder): rank 0 broadcasts them, the others write them. Nothing to do with one rank."""
    import torch.distributed as dist

    if not several_ranks():
        return
    folder = Path(folder)
    files = None
    if dist.get_rank() == 0:
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    box = [files]
    dist.broadcast_object_list(box, src=0)
    if dist.get_rank() != 0:
        for name, content in box[0].items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)


def folder_digest(folder: Path) -> str:
    """sha256 over a folder's file names and contents: the same on every rank when they hold the same files."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class RanksEnded(BaseException):
    """A job failed while several ranks ran it; its ranks are gone, so the multirun cannot go on in this process.
    A BaseException, so that Hydra records the job as failed (its end hooks see it) but runs no other job; the
    multirun's end prints the table and exits 1."""


def several_ranks() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _started_ranks() -> list:
    """The processes Lightning started as this run's other ranks: children re-running this same script."""
    import psutil

    script = os.path.abspath(sys.argv[0])
    ranks = []
    for child in psutil.Process().children(recursive=False):
        with contextlib.suppress(psutil.Error):
            if any(os.path.abspath(part) == script for part in child.cmdline()[1:2]):
                ranks.append(child)
    return ranks


def kill_started_ranks() -> int:
    """SIGKILL (SIGTERM does not reach a process blocked in a collective) the ranks this process started; how many."""
    ranks = _started_ranks()
    for child in ranks:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
    return len(ranks)


@contextlib.contextmanager
def failure_ends_every_rank(multirun_job: bool):
    """Around one training run: an error while several ranks run it ends them all. Rank > 0 prints one line and
    exits 1 (Lightning's watcher on rank 0 then ends the rest); rank 0 kills the ranks it started, and either hands
    the error on (a single run reports it) or, in a multirun, raises RanksEnded so that the multirun stops with its
    table instead of running the next job without its ranks."""
    try:
        yield
    except Exception as error:
        if not several_ranks():
            raise
        rank = global_rank()
        if rank != 0:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            print(f"error on rank {rank}: {first}; ending every rank of this run", file=sys.stderr, flush=True)
            os._exit(1)  # no teardown: it would wait in a collective for the ranks that are still working
        killed = kill_started_ranks()
        print(f"error on rank 0; ended the {killed} rank(s) it started still running", file=sys.stderr, flush=True)
        if multirun_job:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            print(
                "the multirun stops here: this job's ranks were ended with it, and the ranks Lightning starts re-run "
                "the multirun from its first job; run the jobs after it with another `-m` command.",
                file=sys.stderr,
                flush=True,
            )
            raise RanksEnded(f"{type(error).__name__} on rank 0 (another rank's error, if any, is above): {first}")
        raise
