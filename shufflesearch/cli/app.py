"""The `shufflesearch` app and the one place errors become exit codes.

Every command module registers itself on `app` (see `__init__`). Errors become one line on
stderr here: each of our errors carries its exit code (`errors.ShufflesearchError`: 2 for
usage, 1 for the machine or a device), click's usage errors theirs, OS errors exit 1.
SHUFFLESEARCH_DEBUG=1 shows the traceback instead. The global options (`-v`, `-q`, `--version`)
live on the app's callback: they choose what the library's log shows (`shufflesearch.logs`).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from typing import Annotated

import typer

from .. import logs
from ..errors import ShufflesearchError, UsageError

__all__ = ["MAX_ERROR_CHARS", "app", "main"]

app = typer.Typer(
    name="shufflesearch",
    help=(
        "ShuffleNet v1 architecture search and complexity analysis.\n\n"
        "Example: shufflesearch analyze --groups 8 --scale 0.5\n\n"
        "Example: shufflesearch search studies/demo.toml --workers 2"
    ),
    add_completion=True,  # --install-completion: the fixed choices and completers of cli/options.py
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(shown: bool) -> None:
    if shown:
        from .. import __version__

        typer.echo(f"shufflesearch {__version__}")
        raise typer.Exit()


# The global options, before any command: `shufflesearch -v search ...`.
@app.callback()
def _global_options(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False,
                                         help="More log: -v info and Optuna's own log, -vv debug.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final result.")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="Print the version and exit.")] = False,
) -> None:  # fmt: skip
    if verbose and quiet:
        raise UsageError("-q/--quiet and -v/--verbose contradict each other: give one")
    logs.show(*logs.verbosity_level(-1 if quiet else verbose))


MAX_ERROR_CHARS = 1000  # an error may quote the offending value: a 1 MB value is not a readable line


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if logs.quiet():  # -q: errors and the final result only
        return
    typer.echo(f"warning: {' '.join(str(message).split())}", err=True)


def _fail(message: str, code: int) -> None:
    if len(message) > MAX_ERROR_CHARS:
        message = f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS:,} more characters)"
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


@functools.cache
def _click_command():
    # Built once per process (~0.1 s): the tests call main() thousands of times in one process.
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every error ends as one line on stderr."""
    warnings.showwarning = _one_line_warning
    command = _click_command()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["--help"]
    try:
        code = command.main(args=argv, prog_name="shufflesearch", standalone_mode=False)
    except typer.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        if os.environ.get("SHUFFLESEARCH_DEBUG"):
            raise
        _fail_for(exc)
    if code == 130:  # typer turns a KeyboardInterrupt into a silent exit code 130
        _fail("interrupted", 130)
    sys.exit(code or 0)


def _fail_for(exc: Exception) -> None:
    """The error policy: whose fault it is decides the exit code; anything else is a bug (traceback)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__name__ == "NoArgsIsHelpError":  # `shufflesearch lut`: its help, as `shufflesearch` alone
        typer.echo(exc.format_message())
        sys.exit(0)
    if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's usage errors (typer vendors click)
        _fail(" ".join(exc.format_message().split()), exc.exit_code)
    if isinstance(exc, ShufflesearchError):  # ours: the error knows whose fault it is
        _fail(message, exc.exit_code)
    if isinstance(exc, RecursionError):  # a stored or given value nested deeper than any parser goes
        _fail(f"an input is nested too deeply to read ({message})", 2)
    if isinstance(exc, MemoryError):
        _fail("out of memory; lower the widths, resolution, batch or number of workers", 1)
    if isinstance(exc, OSError):
        _fail(f"{exc.strerror or message}: {exc.filename}" if exc.filename else message, 1)
    raise exc
