"""One study file -> its report folder: which Optuna studies, their records and attributes, then `build_report`.

>>> config = load_study("studies/demo.toml")  # doctest: +SKIP
>>> report_study(config, config.default_storage()).out_dir  # doctest: +SKIP
PosixPath('reports/demo')
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from ..search.results import load_records, study_attrs
from ..search.storage import NoSuchStorage, redact
from ..search.study_file import StudyConfig
from .build import ReportResult, build_report


class UnknownStudy(UsageError):
    """A study name that is not one of the study file's budgets."""


class NothingToReport(UsageError):
    """A study that has not been searched yet: a usage error, not an empty report."""


def report_study(
    config: StudyConfig, url: str, studies: list[str] | None = None, out: str | os.PathLike | None = None
) -> ReportResult:
    """Report the study file's Optuna studies (all, or only `studies`) stored at `url` into `out`.

    `out` defaults to reports/<study name>/. A budget not searched yet shows as an empty study;
    no trial in any of them raises NothingToReport.
    """
    windows = config.budget_windows()
    unknown = sorted(set(studies or ()) - set(windows))
    if unknown:
        raise UnknownStudy(f"Invalid value for --study: {unknown[0]!r} is not a study of {config.path}; "
                           f"choose from {', '.join(windows)}")  # fmt: skip
    names = [n for n in windows if not studies or n in studies]
    try:
        stored = study_attrs(url)
    except NoSuchStorage:
        stored = {}  # nothing searched yet: said below
    loaded = load_records(url, [n for n in names if n in stored]) if stored else {}
    records = {n: loaded.get(n, []) for n in names}  # a budget not started yet shows as an empty study
    if not any(records.values()):
        raise NothingToReport(f"study {config.name!r} has no trials yet in {redact(url)}; "
                              f"run: shufflesearch search {config.path}")  # fmt: skip
    latency = config.latency_windows()
    attrs = {n: {"mode": config.mode, "window_mflops": list(windows[n]), "budgeted": config.budgeted(),
                 "dataset": config.dataset, "recipe": config.window_fidelity(n).to_dict(), "seed": config.seed, **({"window_latency_ms": list(latency[n])} if latency[n] else {}),
                 **stored.get(n, {})} for n in names}  # fmt: skip
    return build_report(records, attrs, Path("reports") / config.name if out is None else out,
                        title=f"ShuffleNet search report: {config.name} ({config.mode})",
                        paper_latency=_paper_latency(config))  # fmt: skip


def _paper_latency(config: StudyConfig):
    """The study's latency predictor as the report places paper models with it; None without one."""
    from ..latency.lut import LutError
    from ..search.objective import latency_table, predicted_latency

    try:
        table = latency_table(config)
    except LutError:
        return None  # the table moved or broke since the search: trials keep what they recorded
    if table is None:
        return None

    def predict(spec):
        try:
            return predicted_latency(table, spec)
        except LutError:
            return None  # a paper model outside the table's space (another resolution or head)

    return predict
