"""Reading a file the user named (a study file, a latency table): a regular file of bounded size.

A FIFO would block the read forever and /dev/zero would fill memory, so both are refused by
what they are, before a byte is read; a regular file is read up to a cap no real file nears.
"""

from __future__ import annotations

import os
import stat

from .errors import UsageError


class InputFileError(UsageError):
    """A named input that is not a regular file, or is larger than any real file of its kind."""


_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_input_file(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """The bytes of `path` (symlinks followed); InputFileError if it is no regular file or holds over `limit` bytes.

    Missing or unreadable files raise OSError (FileNotFoundError, PermissionError) as `open` would.

    >>> read_input_file("/dev/zero", 2**20, "study file")
    Traceback (most recent call last):
    shufflesearch.input_file.InputFileError: study file /dev/zero is a character device, not a regular file
    """
    # O_NONBLOCK: opening a FIFO that has no writer would wait forever. Checking the open file, not
    # the name, leaves no window for the name to be swapped to a device in between.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
            raise InputFileError(f"{what} {os.fspath(path)} is {kind}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)  # the byte past the cap tells a file at the cap from a larger (or growing) one
    if len(data) > limit:
        raise InputFileError(f"{what} {os.fspath(path)} is larger than {limit / 2**20:g} MB; no real {what} is")
    return data
