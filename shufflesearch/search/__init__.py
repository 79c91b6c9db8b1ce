"""Budget-constrained architecture search with Optuna: study files, space, workers, storage.

Modules, in the order a search runs: `study_file` (the TOML, validated), `space` (what may
be sampled; the one function that turns a trial into a spec), `storage` (every check of a
storage URL, opening it), `queue` (exactly N trials, the claim lock, dead workers' trials),
`objective` (what a trial measures), `workers` (N local processes), `results` (records and
summaries read back). None of them imports torch or optuna at import time.

>>> from shufflesearch.search import load_study, study_finished
>>> config = load_study("studies/demo.toml")  # doctest: +SKIP
>>> study_finished(config, config.default_storage(), config.trials)  # doctest: +SKIP
False
"""

from .results import (
    StudySummary,
    TrialRecord,
    load_records,
    pareto_front,
    stored_studies,
    study_attrs,
    study_finished,
    summarize_studies,
)
from .space import SearchSpace, specs_for_table
from .storage import StorageError, check_storage_url, redact
from .study_file import StudyConfig, StudyFileError, load_study
from .workers import NothingToResume, SearchError, check_resumable, run_search, storage_url_for

__all__ = [
    "NothingToResume",
    "SearchError",
    "SearchSpace",
    "StorageError",
    "StudyConfig",
    "StudyFileError",
    "StudySummary",
    "TrialRecord",
    "check_resumable",
    "check_storage_url",
    "load_records",
    "load_study",
    "pareto_front",
    "redact",
    "run_search",
    "specs_for_table",
    "storage_url_for",
    "stored_studies",
    "study_attrs",
    "study_finished",
    "summarize_studies",
]
