"""Atomic file writes: a reader sees the old file or the new one, never half of either.

A failure (a full disk, a read-only folder) raises OSError naming the file the caller asked
for, not the temporary name, so the CLI's one line says what was not written:
`error: No space left on device: reports/complexity.csv`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise any OSError inside as the same error about `path`.

    A write error has no file name (ENOSPC from write()) or a temporary one that is gone by
    the time the user reads it; the destination is what they asked for.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # same errno, so the same subclass


def write_atomically(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` beside `path`, fsync, then rename over it. An existing file survives any failure.

    The new file keeps the old file's permissions, else gets 0666 minus the umask (as `open` would).
    """
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _mode_for(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
                os.fchmod(f.fileno(), mode)  # mkstemp's 0600 would hide a report from its readers
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def check_writable(folder: str | os.PathLike) -> Path:
    """Fail now, naming `folder`, if a file cannot be written there (read-only, full, no permission).

    For commands that work for minutes before they write: better an error before the work than after.
    A folder that does not exist yet is checked at its nearest existing parent (nothing is created).
    """
    folder = Path(folder)
    probe_dir = next(p for p in (folder, *folder.parents) if p.exists())
    with naming(folder):
        fd, tmp = tempfile.mkstemp(dir=probe_dir, prefix=".shufflesearch-probe.", suffix=".tmp")
        try:
            os.write(fd, b"\0")  # a full disk still gives an empty file (an inode), not a byte of data
        finally:
            os.close(fd)
            os.unlink(tmp)
    return folder


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0o022)  # the only portable way to read it is to set it
        os.umask(umask)
        return 0o666 & ~umask
