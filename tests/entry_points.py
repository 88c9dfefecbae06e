"""Run the real entry points (`train.py`, `predict.py`, `relevance`) as their own processes, fast: each case is a
child of a fork server that imported the harness's heavy libraries once (multiprocessing's `forkserver`), so a case
costs its own work, not 8 s of imports. The child runs the script's `__main__` block exactly as `python train.py`
does, with its own argv, working folder, environment and standard streams."""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = ["relevance.build", "relevance.serving.predict", "relevance.cli", "hydra", "mlflow"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def _child(script: str, args: list[str], cwd: str, env: dict, out: str, err: str) -> None:
    os.chdir(cwd)
    os.environ.update(env)
    tempfile.tempdir = None  # the server may have cached its own; the child's TMPDIR decides
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)  # noqa: SIM115
    code = 0
    try:
        if script == "relevance":
            from relevance.cli import main

            sys.argv = ["relevance", *args]
            main(args)
        else:
            sys.argv = [str(ROOT / script), *args]
            runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
    except BaseException:  # what the interpreter would print for an uncaught error, with its exit code 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_context = None


def _server():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def run(script: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> Result:
    """`python <script> <args>` (or `relevance <args>`) in `cwd`: its exit code and what it printed."""
    out, err = cwd / ".stdout", cwd / ".stderr"
    environment = {"MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    process = _server().Process(target=_child, args=(script, list(args), str(cwd), environment, str(out), str(err)))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise TimeoutError(f"{script} {' '.join(args)} ran over {timeout} s")
    result = Result(process.exitcode, out.read_text(errors="replace"), err.read_text(errors="replace"))
    out.unlink()
    err.unlink()
    return result
