"""SIGTERM (timeout, docker stop, SLURM preemption) and SIGINT (Ctrl-C) as an interruption the program can name.

Lightning turns an interruption inside `fit`/`predict` into `sys.exit` (0 for SIGTERM, 1 for Ctrl-C), which a
scheduler reads as success or a plain failure. Our handlers record which signal came before anything else sees it,
so the command-line edge can end with 128 + signal and one line, and tracked runs can be marked KILLED.

Python drops an exception raised inside a finalizer or a weakref callback ("Exception ignored in ..."), so a signal
that lands there would be lost and a sweep would run on to the end. An interruption is therefore never dropped: a
swallowed one is delivered again a moment later, outside the finalizer, and `check()` raises it at the points
between stages where a signal already received must stop the work."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import traceback

received: int | None = None  # the signal that interrupted this process, once one has
START_OVER = "run the same command again to start over."
hint = START_OVER  # what the last line tells the user to do next; set by the stage that knows (a run, a sweep)
_depth = 0  # how many `handled` blocks are open: only the outermost installs and restores the handlers
_previous_hook = sys.unraisablehook


class Interrupted(KeyboardInterrupt):
    """Raised by our handlers; a KeyboardInterrupt, so code that stops cleanly on Ctrl-C does so here too."""


def _interrupt(signum, frame) -> None:
    global received
    received = signum
    raise Interrupted(signal.Signals(signum).name)


def _deliver_again(signum: int) -> None:
    if _depth:  # only while our handler is still the one that receives it
        os.kill(os.getpid(), signum)


def _unraisable(unraisable) -> None:
    """An Interrupted that Python dropped (raised in a finalizer): no "Exception ignored" report; the signal comes
    again 50 ms later, where it can stop the program."""
    if isinstance(unraisable.exc_value, Interrupted) and received is not None:
        threading.Timer(0.05, _deliver_again, (received,)).start()
        return
    _previous_hook(unraisable)


def signal_name() -> str:
    return signal.Signals(received).name if received is not None else "SIGINT"


def check() -> None:
    """Raise the interruption a signal already asked for, if one was swallowed on its way (see the module's
    docstring); called between trials and before a run's stages."""
    if received is not None and _depth:
        raise Interrupted(signal_name())


def set_hint(text: str) -> None:
    """What to do after an interruption, as the last line will say it (only inside `handled`)."""
    global hint
    if _depth:
        hint = text


@contextlib.contextmanager
def handled():
    """SIGTERM and SIGINT raise Interrupted inside the block (main thread only: signals are delivered there). A
    block inside another keeps the outer one's handlers and the signal it received."""
    global received, hint, _depth, _previous_hook
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    received, hint = None, START_OVER
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    _previous_hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    _depth = 1
    try:
        yield
    finally:
        _depth = 0
        sys.unraisablehook = _previous_hook
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
    """An interruption, whether it arrives as itself, as the SystemExit Lightning made of it, or as the error a
    library raised while cleaning up after it: alembic, interrupted inside a migration's batch, drops its temporary
    table in a bare `except:` on the connection the interruption invalidated, and sqlalchemy's PendingRollbackError
    replaces the interruption (CI: exit 1 and 60 lines of traceback instead of 143)."""
    if isinstance(error, KeyboardInterrupt):
        return True
    if received is None:
        return False
    return isinstance(error, SystemExit) or any(isinstance(cause, KeyboardInterrupt) for cause in _chain(error))


def _chain(error: BaseException | None):
    """The error and those it was raised while handling, or from."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def free_what_it_held(error: BaseException) -> None:
    """An interruption inside a sqlite write leaves that write's cursor in the traceback's frames, and sqlite keeps
    the connection's write lock, even once closed, until the cursor is freed: every later write to the store then
    waits its timeout and fails ("database is locked"). Clearing the finished frames of the exception (and of
    those it interrupted) and collecting frees them."""
    for link in _chain(error):
        traceback.clear_frames(link.__traceback__)  # frames still running (the handler's own) are left
    gc.collect()


def keep_sqlite_connections() -> None:
    """A signal that lands just after a sqlite statement ran (its cursor still open, inside a write) reaches
    SQLAlchemy as an exit exception, which it takes for a lost connection: it closes the connection without closing
    the cursor, and sqlite keeps that zombie's write lock for as long as anything refers to the cursor, so marking
    runs KILLED waits out every timeout and fails (CI: runs left RUNNING after a SIGTERM at 13 s of a sweep). A
    sqlite connection is intact after a signal (the C call had returned), so it is kept: SQLAlchemy then closes the
    cursor and the rollback that follows frees the lock at once. Idempotent; every sqlite engine of the process."""
    from sqlalchemy import event
    from sqlalchemy.dialects.sqlite.base import SQLiteDialect

    if not event.contains(SQLiteDialect, "handle_error", _keep_on_signal):
        event.listen(SQLiteDialect, "handle_error", _keep_on_signal)


def _keep_on_signal(context) -> None:
    if not isinstance(context.original_exception, Exception):  # KeyboardInterrupt (Interrupted), SystemExit
        context.is_disconnect = False


def exit_code() -> int:
    return 128 + (received if received is not None else signal.SIGINT)
