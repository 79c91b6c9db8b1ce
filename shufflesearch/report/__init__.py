"""Reports: records -> tables and figures. Pure functions; matplotlib imported lazily.

>>> from shufflesearch.report import report_study  # doctest: +SKIP
>>> report_study(load_study("studies/demo.toml"), "sqlite:///studies/demo.db").out_dir  # doctest: +SKIP
PosixPath('reports/demo')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .build import ReportError, ReportResult, build_report
    from .study import NothingToReport, UnknownStudy, report_study

__all__ = ["NothingToReport", "ReportError", "ReportResult", "UnknownStudy", "build_report", "report_study"]

# Importing the package stays light (no pandas, optuna or SQLAlchemy): each name loads its module on first use.
_HOMES = {"ReportError": "build", "ReportResult": "build", "build_report": "build", "NothingToReport": "study",
          "UnknownStudy": "study", "report_study": "study"}  # fmt: skip


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
