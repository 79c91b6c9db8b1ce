"""The objective: a trial -> a spec -> what it measures: proxy accuracy (always) and, for latency studies, a LUT prediction.

`make_objective` is Optuna's side (attributes, pruning, the values returned); an Evaluator
is the measuring side and works on specs only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from .. import interrupt
from ..accuracy.recipe import Fidelity
from ..complexity import count_complexity
from ..errors import MachineError, UsageError
from ..spec import ShuffleNetSpec
from .space import LatencyBudget, NoFeasibleWidth, suggest_spec
from .study_file import StudyConfig

# An evaluator trains/measures one spec; `report(step, top1, loss=None)` (per epoch, on the curve
# subset) may raise optuna.TrialPruned. Its outcome holds "top1" and "test_loss" (on the recipe's
# split) and may hold "checkpoint" (a temporary weights file) and "retrain" (see proxy_accuracy_evaluator).
Evaluator = Callable[[ShuffleNetSpec, Callable[..., None]], dict]
# A trial's objective values by name, from its outcome: the loss is the trainer's `test_loss` (on the recipe's split).
_OUTCOME_KEY = {"loss": "test_loss"}


def latency_table(config: StudyConfig):
    """The study's latency predictor (a LatencyTable, checked to cover the space) when the study names
    one (`lut`: every trial then records its predicted latency) or a latency budget or objective needs
    one, else None."""
    if not (config.lut or config.latency_budgets or (config.second_objective == "latency" and config.mode == "pareto")):
        return None
    from ..latency.lut import resolve_table

    table = resolve_table(config.lut)  # a shipped table's name or a table file
    table.check_covers(config.space)  # fail now, not hours into the search
    return table


def latency_budget(config: StudyConfig, name: str, table=None) -> LatencyBudget | None:
    """Study `name`'s latency window on the study's predictor (`table`, else loaded), or None."""
    window = config.latency_windows().get(name)
    if window is None:
        return None
    table = table or latency_table(config)
    return LatencyBudget(window, table.predict_ms, table.predictor)


def predicted_latency(table, spec: ShuffleNetSpec) -> dict:
    """What a trial records of its predicted latency: the value, its kind, the predictor and its measured error."""
    if table is None:
        return {}
    return {"latency_ms": table.predict_ms(spec), "latency_kind": "lut-estimated" if table.estimated else
            "lut-predicted", "latency_predictor": table.predictor, "latency_error": table.measured_error}  # fmt: skip


def proxy_accuracy_evaluator(config: StudyConfig, threads: int | None = None, device: str | None = None):
    """An Evaluator that trains each spec on the study's dataset and reports per-epoch top-1.

    `device` (default: the study's, resolved here) is where it trains. When the study keeps
    weights, the outcome's "checkpoint" is a temporary safetensors file for the objective to
    keep or drop. A cached result carries no weights: it is served as it is, with a "retrain"
    callable that trains the spec again for its weights, which the objective calls only when
    the policy would keep them (so a search under `best` pays again only for a new best).
    Ctrl-C (see `shufflesearch.interrupt`) stops a trial at its next optimiser step.
    """
    import optuna

    from ..accuracy.cache import ResultCache, result_key
    from ..accuracy.datasets import load_dataset
    from ..accuracy.devices import resolve_device
    from ..accuracy.recipe import adapt_spec
    from ..accuracy.train_result import cached_result
    from ..accuracy.trainer import TRAINER_VERSION, train_proxy

    device = resolve_device(device or config.device)
    keep = config.keep_weights != "none"
    dataset = load_dataset(config.dataset, config.data_dir)
    base = config.fidelity  # a budget-scaled study passes each window's own (`StudyConfig.fidelity_for`)
    cache = ResultCache()
    table = latency_table(config)

    def outcome(result) -> dict:
        if result.status != "ok":
            # Deterministic for this spec and recipe: retrying would diverge again.
            raise optuna.TrialPruned(f"training {result.status}")
        checkpoint = {"checkpoint": _write_checkpoint(result)} if keep and result.weights is not None else {}
        return {
            "top1": result.top1,  # on the split the recipe names (`recipe.split_of`)
            "test_loss": result.test_loss,
            "scored_images": result.scored_images,
            "train_seconds": result.seconds,
            "images_seen": result.images_seen,
            "status": result.status,
            "cached": result.cached,
            "curve": result.curve,
            "dataset": result.dataset,
            "top5": result.top5,
            "device": result.device,
            # how the number was made, for the report: the recipe, the seed, the chance level (`dataset`
            # is the data's name and fingerprint)
            "recipe": result.fidelity,
            "seed": result.seed,
            "classes": dataset.num_classes,
            **checkpoint,
        }

    def evaluate(spec, report, fidelity: Fidelity = base) -> dict:
        def progress(p) -> None:
            interrupt.check()
            top1 = getattr(p, "top1", None)
            if p.epoch_end and top1 is not None:
                report(max(1, round(p.epoch)), top1, getattr(p, "loss", None))

        def train() -> dict:
            result = train_proxy(spec, dataset, fidelity, seed=config.seed, progress=progress, cache=cache,
                                 threads=threads, device=device, keep_weights=keep)  # fmt: skip
            return {**outcome(result), **latency}

        latency = predicted_latency(table, spec)
        if keep:  # train_proxy skips the cache when it must keep weights: look it up here, by its own key
            key = result_key(adapt_spec(spec, dataset, fidelity), dataset.fingerprint, fidelity, config.seed,
                             TRAINER_VERSION, device)  # fmt: skip
            cached = cached_result(cache, key)  # a damaged entry is a miss (one warning), not a traceback
            if cached is not None:
                return {**outcome(cached), **latency, "retrain": train}
        return train()

    return evaluate


def _write_checkpoint(result) -> Path:
    """The run's weights as a checkpoint in a fresh temporary folder (the objective keeps or drops it)."""
    from ..checkpoint import save_result

    return save_result(Path(tempfile.mkdtemp(prefix="shufflesearch-weights-")) / "model.safetensors", result)


def make_objective(config: StudyConfig, window, evaluate: Evaluator, release_claim: Callable[[], None],
                   latency: LatencyBudget | None = None):  # fmt: skip
    """Optuna's objective for one budget window: sample a spec, record it, evaluate it, return the objective values.

    `release_claim` (the queue's claim lock) is called once the spec is sampled, found new
    (see `refuse_repeat`) and recorded: across workers that is one step.
    Every way a trial fails is marked on it (`FAILURE`), so the queue knows what to retry.
    """
    import optuna

    scaled = config.fidelity_for(window[1]) if config.fidelity_by_budget else None

    def objective(trial):
        try:
            return _objective(trial)
        except KeyboardInterrupt:  # Ctrl-C (or a dead parent): not the trial's fault, retried as often as it takes
            mark_failure(trial, "interrupted")
            raise

    def _objective(trial):
        try:
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            try:
                spec = suggest_spec(trial, config.space, window, latency)
            except NoFeasibleWidth as exc:
                trial.set_user_attr("infeasible", str(exc))
                raise optuna.TrialPruned(str(exc)) from None
            refuse_repeat(config, trial, window, spec, latency)
            if latency is not None:
                trial.set_user_attr("latency_budget_ms", list(latency.window_ms))
            trial.set_user_attr("spec", spec.to_dict())  # before the next worker samples: it must see this one
        finally:
            release_claim()  # let the next worker claim (and sample)
        cost = count_complexity(spec)
        trial.set_user_attr("label", spec.label)
        trial.set_user_attr("mflops", cost.mflops)
        trial.set_user_attr("params", cost.params)

        epoch_top1: dict[int, float] = {}

        def report(step: int, top1: float, loss: float | None = None) -> None:
            if config.mode != "per-budget":
                return
            if config.rank_by == "loss":  # Optuna's intermediate values are losses: keep the top-1 for the report
                epoch_top1[step] = top1
                trial.set_user_attr("epoch_top1", epoch_top1)
            value = top1 if config.rank_by == "top1" else loss
            if value is None or not math.isfinite(value):
                return  # nothing to prune on at this epoch
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {step} with top-1 {top1:.4f}"
                                         + (f", loss {loss:.4f}" if config.rank_by == "loss" else ""))  # fmt: skip

        checkpoint = None
        try:
            # a budget-scaled study trains each window with its own recipe; a plain one calls evaluators as ever
            outcome = evaluate(spec, report, fidelity=scaled) if scaled is not None else evaluate(spec, report)
            retrain = outcome.pop("retrain", None)
            if retrain is not None:
                from .artifacts import would_keep

                if would_keep(config, trial, {**outcome, "mflops": cost.mflops}):
                    outcome = retrain()  # a cached result has no weights, and these would be kept
            checkpoint = outcome.pop("checkpoint", None)
            for key, value in outcome.items():
                trial.set_user_attr(key, value)
            values = _values(config, trial, spec, outcome, cost.mflops)  # Optuna would fail the trial quietly
            if checkpoint is not None:
                _keep_weights(config, trial, checkpoint, {**outcome, "mflops": cost.mflops})
        except Exception as exc:
            if not isinstance(exc, optuna.TrialPruned):  # counted across retries: the attrs are inherited
                with contextlib.suppress(Exception):  # a storage that fails here fails the trial, in one line
                    trial.set_user_attr("errors", trial.user_attrs.get("errors", 0) + 1)
                    trial.set_user_attr("error", " ".join(str(exc).split())[:500] or type(exc).__name__)
                    mark_failure(trial, "error")
            raise
        finally:
            if checkpoint is not None:
                shutil.rmtree(Path(checkpoint).parent, ignore_errors=True)
        return values[0] if config.mode == "per-budget" else values

    return objective


class StudyMismatch(UsageError):
    """A study of this name exists in the storage with another mode, direction list or objectives."""


def directions(config: StudyConfig) -> list[str]:
    first = "maximize" if config.rank_by == "top1" else "minimize"
    return [first] if config.mode == "per-budget" else [first, "minimize"]


def objectives(config: StudyConfig) -> list[str]:
    """What the study's values are, in order (stored with a new study, compared when it is opened again):
    top-1 or the loss (`rank_by`, both on the recipe's split), then, in pareto mode, the cost."""
    return [config.rank_by] if config.mode == "per-budget" else [
        config.rank_by, "latency_ms" if config.second_objective == "latency" else "mflops"]  # fmt: skip


def check_same_kind(config: StudyConfig, name: str, stored_directions: list[str], attrs: dict) -> None:
    """Raise StudyMismatch unless the stored study `name` is what `config` would create: a study of
    another mode or objectives fails every trial at Optuna's `tell` (the count of values differs)."""
    mode, stored = attrs.get("mode"), attrs.get("objectives")
    if stored_directions == directions(config) and mode in (None, config.mode) and stored in (None, objectives(config)):
        return
    what = ", ".join(f"{o} ({d})" for o, d in zip(stored or ["?"] * len(stored_directions), stored_directions))
    raise StudyMismatch(
        f"a study named {name!r} already exists in this storage as a {mode or 'foreign'} study of {what}; "
        f"{config.path} asks for a {config.mode} study of "
        f"{', '.join(f'{o} ({d})' for o, d in zip(objectives(config), directions(config)))}: give it another "
        "[study] name, or use another storage"
    )


class ObjectiveValueError(MachineError):
    """An evaluation returned a value Optuna cannot record (NaN, infinity, the wrong number of values)."""


def _values(config: StudyConfig, trial, spec: ShuffleNetSpec, outcome: dict, mflops: float) -> tuple:
    """The trial's objective values, checked: Optuna fails a trial with a NaN quietly, and one with an
    infinity or the wrong count at `tell`, outside anything the queue would count."""
    names = objectives(config)
    values = tuple(mflops if name == "mflops" else outcome.get(_OUTCOME_KEY.get(name, name)) for name in names)
    for name, value in zip(names, values):
        if not (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)):
            raise ObjectiveValueError(f"trial {trial.number} ({spec.label}): {name} is {value!r}, not a finite number")
    wanted = len(trial.study.directions)
    if wanted != len(values):
        raise ObjectiveValueError(f"study {trial.study.study_name} has {wanted} objective(s), this study file "
                                  f"gives {len(values)}: it was created by another study file")  # fmt: skip
    return values


# Why a trial failed, as a trial system attr {"kind", "trial": its number} (a retry inherits its
# parent's system attrs: the number says whose it is). Kinds: "interrupted" (Ctrl-C, not counted),
# "error" (the evaluation raised: counted in the `errors` user attr), "duplicate" (refused, sampled
# again). A failed trial without one (Optuna refused its values, or it failed while recording them)
# is counted by the queue.
FAILURE = "shufflesearch:failure"


def mark_failure(trial, kind: str, **details) -> None:
    with contextlib.suppress(Exception):  # the storage may be what failed: the trial then counts as unmarked
        trial.storage.set_trial_system_attr(trial._trial_id, FAILURE, {"kind": kind, "trial": trial.number, **details})


def failure_kind(frozen) -> str | None:
    """The kind `mark_failure` recorded on this failed trial (a FrozenTrial), None if none."""
    mark = frozen.system_attrs.get(FAILURE)
    return mark.get("kind") if isinstance(mark, dict) and mark.get("trial") == frozen.number else None


RESAMPLES = "shufflesearch:resamples"  # ticket system attr: duplicates refused in a row for this ticket
MAX_RESAMPLES = 5  # then the repeat is run (the queue draws untried specs from the second refusal on)


class RepeatedTrial(Exception):
    """A sampled spec that the study already holds: the trial is failed and its ticket sampled again."""


def refuse_repeat(config: StudyConfig, trial, window, spec: ShuffleNetSpec, latency: LatencyBudget | None = None):
    """Raise RepeatedTrial if `spec` (or these params) is already complete, pruned, running or queued in the study.

    Unless the study asks for repeats (`[study] repeat_specs = true`), or every spec of the window
    has been tried, or this ticket was refused MAX_RESAMPLES times: then the repeat is run and
    says so in `repeat_of`. Call under the claim lock.
    """
    if config.repeat_specs:
        return
    taken = taken_specs(trial.study.get_trials(deepcopy=False), but=trial.number)
    other = taken.get(spec_key(spec.to_dict()), taken.get(params_key(trial.params)))
    if other is None:
        return
    resamples = trial.storage.get_trial_system_attrs(trial._trial_id).get(RESAMPLES, 0)
    if resamples >= MAX_RESAMPLES or not untried(
        config, window, taken, latency
    ):  # nothing new left (or a sampler stuck)
        trial.set_user_attr("repeat_of", other)
        return
    mark_failure(trial, "duplicate", of=other)
    raise RepeatedTrial(f"trial {trial.number} sampled {spec.label}, which trial {other} already holds")


def spec_key(spec: dict) -> str:
    return "spec:" + json.dumps(spec, sort_keys=True)


def params_key(params: dict) -> str:
    return "params:" + json.dumps(params, sort_keys=True, default=str)


def taken_specs(trials, but: int | None = None) -> dict[str, int]:
    """Key of every spec and parameter set the study holds (complete, pruned, running, queued) -> a trial number."""
    taken: dict[str, int] = {}
    for t in trials:
        if t.number == but or t.state.name == "FAIL":
            continue
        if isinstance(t.user_attrs.get("spec"), dict):
            taken.setdefault(spec_key(t.user_attrs["spec"]), t.number)
        params = t.system_attrs.get("fixed_params") or t.params
        if params:
            taken.setdefault(params_key(params), t.number)
    return taken


def untried(config: StudyConfig, window, taken: dict[str, int], latency: LatencyBudget | None = None):
    """The window's specs that no trial holds yet (`taken` from `taken_specs`)."""
    return [s for s in config.space.candidates(window, latency) if spec_key(s.to_dict()) not in taken]


def _keep_weights(config: StudyConfig, trial, checkpoint: Path, values: dict) -> None:
    """Keep the trial's weights if the policy says so; a store that fails costs the weights, not the trial."""
    from .artifacts import ArtifactStoreError, WeightsNotKept, keep_trial_weights

    try:
        keep_trial_weights(config, trial, checkpoint, values)
    except ArtifactStoreError as exc:
        message = " ".join(str(exc).split())[:500]
        trial.set_user_attr("weights_error", message)
        warnings.warn(f"{message}; the trial's score is recorded without weights", WeightsNotKept, stacklevel=2)


__all__ = [
    "FAILURE",
    "Evaluator",
    "ObjectiveValueError",
    "RepeatedTrial",
    "StudyMismatch",
    "check_same_kind",
    "directions",
    "failure_kind",
    "latency_budget",
    "latency_table",
    "make_objective",
    "mark_failure",
    "objectives",
    "predicted_latency",
    "proxy_accuracy_evaluator",
    "refuse_repeat",
    "taken_specs",
    "untried",
]
