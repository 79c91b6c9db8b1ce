"""The one folder shufflesearch caches under: $XDG_CACHE_HOME/shufflesearch, else ~/.cache/shufflesearch.

The XDG Base Directory spec says a relative value is invalid and must be ignored, and an empty one
means unset: `XDG_CACHE_HOME=` or `XDG_CACHE_HOME='$HOME/.cache'` (quoted, so never expanded) once
made a folder named `$HOME` in the working folder. Both now mean the default.

>>> cache_root({"XDG_CACHE_HOME": "relative/path", "HOME": "/home/ada"})
PosixPath('/home/ada/.cache/shufflesearch')
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["cache_root"]


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """The shufflesearch cache folder (not created): results, sysroots and weights live below it.

    $XDG_CACHE_HOME if it is an absolute path, else the home folder's .cache ($HOME if absolute,
    else the user's home in the password database). With no home at all, a folder of this user's
    in the temporary folder: a cache costs only time, so it must never stop a run.
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "shufflesearch"
    home = env.get("HOME", "")
    if not os.path.isabs(home):
        home = _password_home()
    if home:
        return Path(home) / ".cache" / "shufflesearch"
    return Path(tempfile.gettempdir()) / f"shufflesearch-cache-{os.getuid()}"


def _password_home() -> str:
    try:
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError, OSError):
        return ""
    return home if os.path.isabs(home) else ""
