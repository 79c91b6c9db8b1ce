"""The study files shipped in the package, and writing one to start from (`shufflesearch init`).

These TOML files are the one copy: the repo's studies/*.toml are links to them, so the README's
commands, the tests and an installed wheel read the same text. A study started from a template is
checked by the study-file parser before it takes its name, and never replaces an existing file.

>>> template_names()[:2]
('budgets-10-150', 'demo')
>>> start_study("demo", name="mine")  # doctest: +SKIP
PosixPath('studies/mine.toml')
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from importlib import resources
from pathlib import Path

from ..errors import UsageError

__all__ = ["DEFAULT_TEMPLATE", "TemplateError", "start_study", "template_names", "template_text"]

DEFAULT_TEMPLATE = "demo"
# Every template's [study] table opens the file and names the study on one line: the line a new name replaces.
_NAME_LINE = re.compile(r'^name = "[^"\n]*"$', re.MULTILINE)


class TemplateError(UsageError):
    """An unknown template, or a study file that already exists (exit 2)."""


def template_names() -> tuple[str, ...]:
    """The shipped templates, by the stem of their file."""
    folder = resources.files(__name__)
    return tuple(sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")))


def template_text(template: str) -> str:
    if template not in template_names():
        raise TemplateError(f"no template {template!r}: choose one of {', '.join(template_names())}")
    return resources.files(__name__).joinpath(f"{template}.toml").read_text(encoding="utf-8")


def start_study(
    template: str = DEFAULT_TEMPLATE, out: str | os.PathLike | None = None, name: str | None = None
) -> Path:
    """Write `template` as a new study file and return its path.

    The study is called `name`, else the stem of `out`, else the template's name; `out` defaults to
    studies/<name>.toml. An existing `out` is refused (TemplateError), whatever happens in between.
    """
    text = template_text(template)
    name = name or (Path(out).stem if out is not None else template)
    out = Path(out) if out is not None else Path("studies") / f"{name}.toml"
    if out.exists() or out.is_symlink():
        raise _exists(out)
    # json.dumps writes a valid TOML basic string: no name can end the string and add a key.
    renamed = _NAME_LINE.sub(lambda m: f"name = {json.dumps(name)}", text, count=1)
    _check_parses(renamed, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_new(out, renamed)
    return out


def _exists(out: Path) -> TemplateError:
    return TemplateError(f"{out} already exists; init never overwrites a study file: pick another NAME or --out")


def _check_parses(text: str, out: Path) -> None:
    """Parse `text` as the study file `out` would be (a bad NAME fails here), before anything is created."""
    from ..search.study_file import StudyFileError, load_study  # here: listing templates stays a cheap import

    with tempfile.TemporaryDirectory(prefix="shufflesearch-init-") as folder:
        draft = Path(folder) / out.name
        draft.write_text(text, encoding="utf-8")
        try:
            load_study(draft)
        except StudyFileError as exc:  # say it about the file the user asked for
            raise StudyFileError(str(exc).replace(str(draft), str(out))) from None


def _write_new(out: Path, text: str) -> None:
    """Write a temporary file beside `out`, then link it to `out`, which must not exist."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            umask = os.umask(0o022)  # the only portable way to read it is to set it
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)  # as `open` would make it, not mkstemp's 0600
        try:
            os.link(tmp, out)  # atomic, and fails if `out` appeared meanwhile: never overwrites
        except FileExistsError:
            raise _exists(out) from None
        except OSError:  # a file system without hard links: exclusive create is the next best
            with open(out, "x", encoding="utf-8") as f:
                f.write(text)
    finally:
        os.unlink(tmp)
