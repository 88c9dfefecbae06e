"""SIGTERM (timeout, docker stop, SLURM preemption) and SIGINT (Ctrl-C) as an interruption the program can name.

Lightning turns an interruption inside `fit`/`predict` into `sys.exit` (0 for SIGTERM, 1 for Ctrl-C), which a
scheduler reads as success or a plain failure. Our handlers record which signal came before anything else sees it,
so the command-line edge can end with 128 + signal and one line, and tracked runs can be marked KILLED."""

from __future__ import annotations

import contextlib
import signal
import threading

received: int | None = None  # the signal that interrupted this process, once one has


class Interrupted(KeyboardInterrupt):
    """Raised by our handlers; a KeyboardInterrupt, so code that stops cleanly on Ctrl-C does so here too."""


def _interrupt(signum, frame) -> None:
    global received
    received = signum
    raise Interrupted(signal.Signals(signum).name)


def signal_name() -> str:
    return signal.Signals(received).name if received is not None else "SIGINT"


@contextlib.contextmanager
def handled():
    """SIGTERM and SIGINT raise Interrupted inside the block (main thread only: signals are delivered there)."""
    global received
    received = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def interruptible():
    """`handled` for an entry point called from Python (a notebook, a script, a test): an interruption leaves the
    block as Interrupted, never as the SystemExit Lightning made of it. Without it, Lightning alone notes a SIGTERM
    and stops only at the end of the epoch, and turns a Ctrl-C inside `fit` into SystemExit(1); either way the
    runs end FAILED."""
    with handled():
        try:
            yield
        except SystemExit as error:
            if not was_interrupted(error):
                raise
            raise Interrupted(signal_name()) from None


def was_interrupted(error: BaseException) -> bool:
    """An interruption, whether it arrives as itself or as the SystemExit Lightning made of it."""
    return isinstance(error, KeyboardInterrupt) or (isinstance(error, SystemExit) and received is not None)


def exit_code() -> int:
    return 128 + (received if received is not None else signal.SIGINT)
