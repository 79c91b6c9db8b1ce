"""Trials' trained weights, kept in Optuna's artifact store so optuna-dashboard lists them.

The store is `StudyConfig.artifact_location()`: a `FileSystemArtifactStore` folder beside the
study file by default (`studies/demo.artifacts/`), or `s3://bucket` / `gs://bucket` (Optuna's
Boto3 and GCS stores) so that workers on many machines share one. Optuna records which
artifact belongs to which trial in the study's storage; it does not record the store, so
every machine must name the same one (`[study] artifacts = ...`).

The study's `keep_weights` bounds the disk:
- `best` (default): a trial's checkpoint is uploaded only if it beats every finished trial of
  its budget window (pareto mode: if it is on the front), and the checkpoints it supersedes
  are removed, so a budget holds one (plus at most one per worker that finished at the same
  moment, removed by the next upload). Optuna cannot edit a finished trial, so a removed
  checkpoint's entry stays in the trial and the study notes the removal;
- `all`: every complete trial's checkpoint;
- `none`: no weights.

A cached proxy result has no weights: it is trained again only when the policy would keep it
(`would_keep`: under `best`, a new best of its window), else served from the cache. A store
that fails (full disk, lost bucket) costs the trial its weights, not its score: the objective
warns (WeightsNotKept) and records the reason as the trial's `weights_error`.

>>> from shufflesearch.search import load_study
>>> trial_checkpoint(load_study("studies/demo.toml"), "sqlite:///studies/demo.db", 3, budget=40)  # doctest: +SKIP
PosixPath('/home/me/.cache/shufflesearch/artifacts/5c0f...-trial-3.safetensors')
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ..errors import MachineError, UsageError
from .standing import rank_value
from .storage import open_storage
from .study_file import StudyConfig

FILENAME = "trial-{number}.safetensors"  # what optuna-dashboard offers for download
_REMOVED = "shufflesearch:weights-removed:"  # + artifact id: a study system attr, the superseding trial


class NoWeights(UsageError):
    """The trial asked for has no kept weights (the policy removed them, or never kept them)."""


class ArtifactStoreError(MachineError):
    """The artifact store cannot be opened, written or read."""


class WeightsNotKept(UserWarning):
    """A finished trial's weights could not be kept (the store failed): its score stands without them."""


def artifact_store(config: StudyConfig):
    """The study's Optuna artifact store (a folder is created on first use)."""
    location = config.artifact_location()
    if location.startswith(("s3://", "gs://")):
        bucket = location.split("://", 1)[1].strip("/")
        try:
            if location.startswith("s3://"):
                from optuna.artifacts import Boto3ArtifactStore

                return Boto3ArtifactStore(bucket)
            from optuna.artifacts import GCSArtifactStore

            return GCSArtifactStore(bucket)
        except ImportError as exc:
            raise ArtifactStoreError(f"artifacts = {location!r} needs {exc.name}: pip install {exc.name}") from None
    from optuna.artifacts import FileSystemArtifactStore

    folder = Path(location)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactStoreError(f"cannot create the artifact folder {folder}: {exc.strerror or exc}") from None
    return FileSystemArtifactStore(folder)


def would_keep(config: StudyConfig, trial, values: dict) -> bool:
    """Whether the policy keeps a checkpoint with these `values` (see `keep_trial_weights`) for `trial` now.

    Asked before training only for weights: a cached result that the policy would drop is served as it is.
    """
    if config.keep_weights != "best":
        return config.keep_weights == "all"
    return _is_best(config, values, [t.user_attrs for t in _finished(trial)])


def keep_trial_weights(config: StudyConfig, trial, checkpoint: Path, values: dict) -> str | None:
    """Upload `checkpoint` for the running `trial` if the policy keeps it; return the artifact id (None: not kept).

    `values` holds the trial's `top1` and `test_loss` (and `mflops` / `latency_ms` in pareto mode). Under `best`
    (by the study's `rank_by`),
    the checkpoints of the window's other trials that this one beats are removed. Any failure of
    the store (whatever its client raises) is an ArtifactStoreError.
    """
    if config.keep_weights == "none":
        return None
    import optuna

    study, storage = trial.study, trial.storage
    finished = _finished(trial)
    if config.keep_weights == "best" and not _is_best(config, values, [t.user_attrs for t in finished]):
        return None
    store = artifact_store(config)
    named = Path(checkpoint).with_name(FILENAME.format(number=trial.number))
    os.replace(checkpoint, named)
    try:
        artifact_id = optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(named),
                                                       study_or_trial=trial)  # fmt: skip
    except Exception as exc:  # OSError from a folder; a cloud client raises its own kinds
        raise ArtifactStoreError(f"cannot keep trial {trial.number}'s weights in {config.artifact_location()}: "
                                 f"{_reason(exc)}") from None  # fmt: skip
    finally:
        named.unlink(missing_ok=True)
    trial.set_user_attr("weights", artifact_id)
    if config.keep_weights == "best":
        try:
            _remove_superseded(config, study, storage, store, trial.number, values, finished)
        except Exception as exc:
            raise ArtifactStoreError(f"kept trial {trial.number}'s weights, but cannot remove the ones it beat from "
                                     f"{config.artifact_location()}: {_reason(exc)}") from None  # fmt: skip
    return artifact_id


def _finished(trial) -> list:
    import optuna

    return trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _reason(exc: Exception) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
    return text or type(exc).__name__


def _standing(config: StudyConfig, attrs: dict) -> float | None:
    """A trial's standing by the study's `rank_by` (higher is better), from its attributes; None: not a number."""
    numbers = {k: v if isinstance(v, int | float) and not isinstance(v, bool) else None
               for k, v in (("top1", attrs.get("top1")), ("loss", attrs.get("test_loss")))}  # fmt: skip
    return rank_value(numbers, config.rank_by)


def _is_best(config: StudyConfig, values: dict, others: list[dict]) -> bool:
    score = _standing(config, values)
    if score is None:
        return False
    if config.mode != "pareto":
        return all(_standing(config, o) is None or score > _standing(config, o) for o in others)
    second = "latency_ms" if config.second_objective == "latency" else "mflops"
    mine = values.get(second)
    return mine is not None and not any(
        _standing(config, o) is not None and isinstance(o.get(second), int | float)
        and _standing(config, o) >= score and o[second] <= mine and (_standing(config, o), o[second]) != (score, mine)
        for o in others
    )  # fmt: skip


def _remove_superseded(config, study, storage, store, number: int, values: dict, finished) -> None:
    """Remove the kept checkpoints of the window's trials that are no longer best (after `number` was kept)."""
    from optuna.artifacts import get_all_artifact_meta
    from optuna.artifacts.exceptions import ArtifactNotFound

    removed = {k[len(_REMOVED) :] for k in storage.get_study_system_attrs(study._study_id) if k.startswith(_REMOVED)}
    by_number = {t.number: t.user_attrs for t in finished}
    by_number[number] = values
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            continue
        rest = [a for n, a in by_number.items() if n != t.number]
        if t.state.name == "COMPLETE" and _is_best(config, by_number.get(t.number, t.user_attrs), rest):
            continue  # still on the pareto front
        for meta in get_all_artifact_meta(t, storage=storage):
            if meta.artifact_id in removed:
                continue
            with contextlib.suppress(ArtifactNotFound, FileNotFoundError):
                store.remove(meta.artifact_id)
            storage.set_study_system_attr(study._study_id, _REMOVED + meta.artifact_id, number)


def trial_checkpoint(
    config: StudyConfig, url: str, trial: int, budget: float | None = None, budget_ms: float | None = None
) -> Path:
    """Download trial `trial`'s kept checkpoint to the local cache and return its path.

    `budget` (MFLOPs) and/or `budget_ms` name the budget window when the study has several; trial numbers
    count per window, as in reports and optuna-dashboard.
    """
    import optuna
    from optuna.artifacts import get_all_artifact_meta
    from optuna.artifacts.exceptions import ArtifactNotFound

    from .results import find_trial

    name, _ = find_trial(config, url, budget=budget, trial=trial, budget_ms=budget_ms)
    storage = open_storage(url, create=False)
    study = optuna.load_study(study_name=name, storage=storage)
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial)
    removed = storage.get_study_system_attrs(study._study_id)
    metas = [m for m in get_all_artifact_meta(frozen, storage=storage) if m.filename.endswith(".safetensors")]
    live = [m for m in metas if _REMOVED + m.artifact_id not in removed]
    if not live:
        kept = [t.number for t in study.get_trials(deepcopy=False) if any(
            _REMOVED + m.artifact_id not in removed for m in get_all_artifact_meta(t, storage=storage))]  # fmt: skip
        raise NoWeights(_no_weights_message(config, name, trial, metas, removed, kept))
    meta = live[-1]
    cached = _cache_folder() / f"{meta.artifact_id}.safetensors"
    if cached.exists():  # an artifact never changes: its id names its content
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=cached.parent)) / meta.filename
    try:
        optuna.artifacts.download_artifact(artifact_store=artifact_store(config), file_path=str(partial),
                                           artifact_id=meta.artifact_id)  # fmt: skip
        os.replace(partial, cached)
    except ArtifactNotFound:
        raise NoWeights(
            f"trial {trial} of {name}: its weights ({meta.artifact_id}) are not in the artifact store "
            f"{config.artifact_location()}; name the store the search used ([study] artifacts)"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
        partial.parent.rmdir()
    return cached


def _no_weights_message(config: StudyConfig, name: str, trial: int, metas, removed: dict, kept: list[int]) -> str:
    have = f"trials with weights: {', '.join(map(str, kept))}" if kept else "no trial of it has weights"
    if metas:
        by = removed.get(_REMOVED + metas[-1].artifact_id)
        return (f"trial {trial} of {name}: its weights were removed when trial {by} beat it (keep_weights = "
                f"'{config.keep_weights}' keeps the best per budget); {have}")  # fmt: skip
    return f"trial {trial} of {name} kept no weights (keep_weights = '{config.keep_weights}'); {have}"


def _cache_folder() -> Path:
    """<cache root>/artifacts (`cache_dir.cache_root`: an unset, empty or relative XDG_CACHE_HOME is ignored)."""
    from ..cache_dir import cache_root

    return cache_root() / "artifacts"


__all__ = [
    "FILENAME",
    "ArtifactStoreError",
    "NoWeights",
    "WeightsNotKept",
    "artifact_store",
    "keep_trial_weights",
    "trial_checkpoint",
    "would_keep",
]
