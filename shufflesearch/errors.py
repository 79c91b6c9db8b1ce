"""The one family of errors shufflesearch raises on purpose, each carrying its exit code.

The command line turns any of them into one line on stderr and `exit_code`: 2 when the
user asked for something wrong or impossible (fix the input), 1 when this machine, a
device or a storage server is at fault (the input was fine). Nothing else decides it.

>>> raise UsageError("groups=5 is not supported")  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["MachineError", "ShufflesearchError", "UsageError"]


class ShufflesearchError(Exception):
    """Base of every error we raise for a person to read; `exit_code` says whose fault it is."""

    exit_code = 1


class UsageError(ShufflesearchError, ValueError):
    """The input is wrong: a value, a file, a combination. Exit code 2."""

    exit_code = 2


class MachineError(ShufflesearchError, RuntimeError):
    """The input is fine; this machine, a device or a server cannot do it. Exit code 1."""

    exit_code = 1
