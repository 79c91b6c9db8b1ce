"""A report folder on disk: built beside the old one, swapped in whole, replacing only what a report wrote.

The marker file lists every file the last build wrote with its SHA-256 (the `sha256sum` format, so
`sha256sum -c .shufflesearch-report` checks a report). A rebuild replaces those files and keeps everything
else in the folder (a note, a sub-folder, a file a newer version no longer writes): before the swap, each
kept entry is hard-linked (else copied) into the new folder, so a failed rebuild still leaves the old
folder exactly as it was. A folder it must not touch is refused in one line: one without a marker (not a
report), a report file changed since it was written, or a file of the user's where the report writes one.

>>> manifest({"index.html": digest(b"")}).splitlines()[1]
'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  index.html'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

MARKER = ".shufflesearch-report"  # a folder holding this file is a report: its listed files may be replaced
_HEAD = "# Written by `shufflesearch report`: a rebuild replaces the files listed here and keeps any other.\n"
_LINE = re.compile(r"([0-9a-f]{64})  (\S.*)")
_MARKER_BYTES = 1 << 20  # a marker is a few lines; anything bigger is not one we wrote


class ReportError(UsageError):
    """An output folder we must not replace."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(digests: dict[str, str]) -> str:
    """The marker's text: what this build wrote (relative path -> SHA-256)."""
    return _HEAD + "".join(f"{sha}  {rel}\n" for rel, sha in sorted(digests.items()))


def _written(marker: Path) -> dict[str, str] | None:
    """Path -> SHA-256 from an existing marker; None for a marker that lists nothing (written before lists were)."""
    try:
        if marker.is_symlink() or not marker.is_file() or marker.stat().st_size > _MARKER_BYTES:
            return None
        text = marker.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    listed = {m[2]: m[1] for m in map(_LINE.fullmatch, text.splitlines()) if m}
    return listed or None


def _walk(root: Path) -> list[tuple[str, Path]]:
    """Every entry below `root`, parents before children, links not followed: (relative posix path, path)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in [*sorted(dirs), *sorted(files)]:
            path = Path(folder) / name
            found.append((path.relative_to(root).as_posix(), path))
    return found


@dataclass(frozen=True)
class Existing:
    """What an earlier report folder holds: the last report's files, and the entries a rebuild keeps."""

    ours: frozenset[str] = frozenset()
    keep: tuple[str, ...] = ()  # parents before children


def existing(target: Path, out_dir: Path, files: set[str], folders: set[str]) -> Existing:
    """Refuse a folder `target` we must not replace (errors name `out_dir`); else what it holds.

    `files` and `folders`: every path a report may write. An entry is the last report's if it is a regular file
    at one of those paths, listed in the marker, with the listed content (any, under an old marker that lists
    nothing)."""
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:  # the swap would rename the user's working folder away
        raise ReportError(f"--out {out_dir}: is the current folder or holds it; choose a folder such as reports/demo")
    if not target.exists():
        return Existing()
    if not target.is_dir():
        raise ReportError(f"--out {out_dir}: is a file, not a folder; choose a folder name such as reports/demo")
    if not any(target.iterdir()):
        return Existing()
    if not (target / MARKER).is_file():
        raise ReportError(f"--out {out_dir}: the folder holds files that are not a shufflesearch report and would be "
                          "replaced; choose an empty or new folder such as reports/demo")  # fmt: skip
    written = _written(target / MARKER)
    ours, keep = {MARKER}, []
    for rel, path in _walk(target):
        if rel == MARKER:
            continue
        if rel in folders and path.is_dir() and not path.is_symlink():
            continue  # the new report has it too; what it holds is sorted out entry by entry
        regular = path.is_file() and not path.is_symlink()
        if rel in files and regular and (written is None or rel in written):
            if written is not None and _file_digest(path) != written[rel]:
                raise ReportError(f"--out {out_dir}: {rel} was changed after the report wrote it and would be "
                                  "replaced; move it out of the folder (or delete it), then run again")  # fmt: skip
            ours.add(rel)
        elif rel in files or rel in folders:
            raise _in_the_way(out_dir, rel)
        else:
            keep.append(rel)
    return Existing(frozenset(ours), tuple(keep))


def _in_the_way(out_dir: Path, rel: str) -> ReportError:
    return ReportError(f"--out {out_dir}: {rel} was not written by the report, which writes there; move it out of "
                       "the folder, then run again")  # fmt: skip


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def carry_over(old: Path, new: Path, keep: tuple[str, ...], out_dir: Path) -> None:
    """Put every kept entry of `old` into `new` (parents first): folders made, links copied, files hard-linked.

    `old` is not changed. A file that cannot be linked (another filesystem, a protected link) is copied; a FIFO or
    device that cannot be is refused (copying would read it)."""
    folders = []
    for rel in keep:
        src, dst = old / rel, new / rel
        if os.path.lexists(dst):
            raise _in_the_way(out_dir, rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            dst.mkdir()
            folders.append((src, dst))
        else:
            try:
                os.link(src, dst, follow_symlinks=False)
            except OSError as exc:
                if not src.is_file():
                    raise ReportError(f"--out {out_dir}: cannot keep {rel} in the new report ({exc.strerror}); "
                                      "move it out of the folder, then run again") from None  # fmt: skip
                shutil.copy2(src, dst, follow_symlinks=False)
    for src, dst in reversed(folders):  # after their contents: adding entries changes a folder's times
        shutil.copystat(src, dst, follow_symlinks=False)


def swap_in(new: Path, target: Path, before: Existing) -> None:
    """Replace `target` by `new` with two renames: a reader sees the old report, the new one, or briefly none.

    Of the old folder only the last report's files and the entries carried into `new` are deleted; an entry that
    appeared during the build is moved over too or, if it cannot be, left in the renamed old folder."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    gone = before.ours | set(before.keep)
    for rel, path in reversed(_walk(old)):  # children before their folders
        with contextlib.suppress(OSError):  # what cannot be moved stays in the old folder, which then stays too
            if path.is_dir() and not path.is_symlink():
                path.rmdir()  # only if empty
            elif rel in gone:
                path.unlink()
            elif not os.path.lexists(target / rel):  # appeared while the new report was built
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target / rel)
    with contextlib.suppress(OSError):
        old.rmdir()
