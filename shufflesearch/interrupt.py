"""Ctrl-C that never leaves a run half-done: noted in one place, raised where it is safe.

Python's default raises KeyboardInterrupt wherever the main thread happens to be. In the
middle of an import it leaves numpy half-initialised (the next call fails with an
unrelated error) or aborts the process from inside torch's C++ start-up; inside a weakref
callback or a library's bare `except:` it is swallowed and the run goes on. So Ctrl-C is
always *noted* here, and long runs (`deferred`) raise it themselves at the next optimiser
step or between trials, a fraction of a second later. The note outlives a swallowed
KeyboardInterrupt, so the next `check()` still stops the run.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_requested = False


def requested() -> bool:
    """Has Ctrl-C been pressed in this process?"""
    return _requested


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C has been pressed: call where stopping is safe."""
    if _requested:
        raise KeyboardInterrupt


def install() -> None:
    """Python's usual Ctrl-C (raise at once), plus the note that `requested()` and `check()` read."""
    _set_handler(_note_and_raise)


def _note_and_raise(signum, frame) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def settle() -> None:
    """The run is over: from now on Ctrl-C is ignored.

    A handler would raise inside interpreter-exit callbacks (torch's), and Python puts the
    default back while it finalizes, so a late Ctrl-C killed a finished run with status
    130 and no word. Ignoring it is the one disposition Python keeps to the end.
    """
    _set_handler(signal.SIG_IGN)


@contextlib.contextmanager
def deferred(escalate: bool = True):
    """Inside, Ctrl-C is only noted: the code calls `check()` at safe points.

    With `escalate`, a second Ctrl-C raises at once, for a user who will not wait. Worker
    processes do not escalate: they receive the terminal's Ctrl-C and the parent's
    forwarded one, which must not count as two.
    """

    def note(signum, frame) -> None:
        global _requested
        if _requested and escalate:
            raise KeyboardInterrupt
        _requested = True

    previous = _set_handler(note)
    try:
        yield
    finally:
        if previous is not None:
            _set_handler(previous)


def _set_handler(handler):
    if threading.current_thread() is not threading.main_thread():  # signal handlers live there only
        return None
    previous = signal.signal(signal.SIGINT, handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # see `sigint_blocked`
    return previous


@contextlib.contextmanager
def sigint_blocked():
    """Start child processes with SIGINT blocked (the mask survives fork and exec).

    A Ctrl-C while a child is still importing then waits, pending, until the child's own
    handler unblocks it, instead of breaking an import halfway.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
