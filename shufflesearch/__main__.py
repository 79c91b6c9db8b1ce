"""`shufflesearch` and `python -m shufflesearch`: the command line, safe to Ctrl-C from the first instant.

A Ctrl-C while the CLI's imports run is noted and acted on once they are done, instead of
breaking one halfway. One that breaks something later anyway (a library swallowed the
KeyboardInterrupt, or an import it cut short fails afterwards) still ends as one line
and exit code 130, never as a traceback.
"""

import sys

from . import interrupt


def main() -> None:
    interrupt.install()
    try:
        with interrupt.deferred():
            from .cli import main as cli_main
        interrupt.check()
        cli_main()
    except KeyboardInterrupt:
        _interrupted()
    except Exception:
        if interrupt.requested():
            _interrupted()
        raise
    finally:
        interrupt.settle()  # torch's and others' exit callbacks run next


def _interrupted() -> None:
    sys.stderr.write("error: interrupted\n")
    raise SystemExit(130)


if __name__ == "__main__":
    main()
