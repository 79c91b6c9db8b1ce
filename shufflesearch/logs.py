"""How a process of ours shows its log: one line a record on stderr (`warning: ...`), at the chosen level.

The library only logs (`logging.getLogger(__name__)`); the command line chooses what is shown
(`-q`: errors; default: warnings; `-v`: info and Optuna's own log; `-vv`: debug), and worker
processes take the same choice from their parent (`chosen()` there, `show(*chosen)` here).
Nothing here imports Optuna: whoever opens a study sets Optuna's verbosity to `optuna_level()`.

>>> show(verbosity_level(1)[0]); logging.getLogger("shufflesearch").getEffectiveLevel() == logging.INFO
True
"""

from __future__ import annotations

import logging
import sys

__all__ = ["chosen", "optuna_level", "quiet", "show", "verbosity_level"]

_ROOT = "shufflesearch"
_optuna_level = logging.ERROR  # our progress view reports trial states; Optuna's log is for -v


def verbosity_level(verbosity: int) -> tuple[int, int]:
    """(our level, Optuna's) for a verbosity: -1 (-q), 0, 1 (-v), 2 or more (-vv)."""
    if verbosity < 0:
        return logging.ERROR, logging.ERROR
    if verbosity == 0:
        return logging.WARNING, logging.ERROR
    return (logging.INFO, logging.INFO) if verbosity == 1 else (logging.DEBUG, logging.DEBUG)


class _OneLine(logging.Handler):
    """A record as one line on the current stderr (looked up each time: tests and redirects replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = " ".join(self.format(record).split())
            sys.stderr.write(f"{record.levelname.lower()}: {message}\n")
            sys.stderr.flush()
        except Exception:  # logging must never fail the command (stderr gone with the parent)
            self.handleError(record)


def show(level: int, optuna: int = logging.ERROR) -> None:
    """Show our records at `level` and above on stderr, and ask for Optuna's at `optuna` (idempotent)."""
    global _optuna_level
    logger = logging.getLogger(_ROOT)
    for handler in [h for h in logger.handlers if isinstance(h, _OneLine)]:
        logger.removeHandler(handler)
    logger.addHandler(_OneLine())
    logger.setLevel(level)
    _optuna_level = optuna
    if "optuna" in sys.modules:  # already imported (a test, a worker): now; otherwise whoever opens a study does
        sys.modules["optuna"].logging.set_verbosity(optuna)


def chosen() -> tuple[int, int]:
    """(our level, Optuna's) as chosen in this process: what a worker process is started with."""
    return logging.getLogger(_ROOT).getEffectiveLevel(), _optuna_level


def optuna_level() -> int:
    return _optuna_level


def quiet() -> bool:
    """-q: only errors and the final result."""
    return logging.getLogger(_ROOT).getEffectiveLevel() >= logging.ERROR
