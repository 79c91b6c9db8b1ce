"""Tables that ship with the package, and the one function that turns a name or a path into a table.

A shipped table lives in shufflesearch/latency/tables/<name>-estimated.lut.json and is asked for
by its name (`--lut snapdragon820`, `lut = "snapdragon820"` in a study file), so latency works on
a fresh clone with no device. A value with a "/" or ending in ".json" is a path; anything else
is a name, so a stray file in the working directory never stands in for a shipped table.

>>> sorted(shipped_tables())
['snapdragon820']
>>> resolve_table("snapdragon820").kind
'estimated'
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from .table import LatencyTable, LutError

SUFFIX = "-estimated.lut.json"
REGENERATE = {  # the one command that rebuilds each shipped table (docs/arm-emulation.md names it)
    "snapdragon820": "shufflesearch lut build --target arm64-emulated --profile snapdragon820 "
    "--out shufflesearch/latency/tables/snapdragon820-estimated.lut.json",
}


def shipped_tables() -> dict[str, Path]:
    """name -> file of every table shipped with the package."""
    folder = importlib.resources.files("shufflesearch.latency").joinpath("tables")
    if not folder.is_dir():
        return {}
    return {p.name.removesuffix(SUFFIX): Path(str(p)) for p in folder.iterdir() if p.name.endswith(SUFFIX)}


def is_table_name(value: str | os.PathLike) -> bool:
    """True for a shipped table's kind of name ("snapdragon820"), False for a path."""
    text = os.fspath(value)
    return "/" not in text and os.sep not in text and not text.endswith(".json") and bool(text)


def resolve_table(name_or_path: str | os.PathLike) -> LatencyTable:
    """The table a user named: a shipped table by name, or a table file by path (LutError otherwise)."""
    if not is_table_name(name_or_path):
        return LatencyTable.load(name_or_path)
    name, tables = os.fspath(name_or_path), shipped_tables()
    path = tables.get(name.removesuffix(SUFFIX.removesuffix(".lut.json")))
    if path is None:
        raise LutError(
            f"no shipped latency table named {name!r} (shipped: {', '.join(sorted(tables)) or 'none'}); pass a "
            f"table file (a path with '/' or ending in .json), or build one: shufflesearch lut build --out {name}.lut.json"
        )
    table = LatencyTable.load(path)
    table.source = name  # messages and records name what the user asked for
    return table
