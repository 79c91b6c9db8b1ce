"""The objective: a trial -> a spec -> what it measures: proxy accuracy (always) and, for latency studies, a LUT prediction.

`make_objective` is Optuna's side (attributes, pruning, the values returned); an Evaluator
is the measuring side and works on specs only.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from .. import interrupt
from ..complexity import count_complexity
from ..spec import ShuffleNetSpec
from .space import NoFeasibleWidth, suggest_spec
from .study_file import StudyConfig

# An evaluator trains/measures one spec; `report(step, top1)` may raise optuna.TrialPruned. Its
# outcome may hold "checkpoint" (a temporary weights file) and "retrain" (see proxy_accuracy_evaluator).
Evaluator = Callable[[ShuffleNetSpec, Callable[[int, float], None]], dict]


def latency_table(config: StudyConfig):
    """The study's device LUT when latency is an objective (checked to cover the space), else None."""
    if config.second_objective != "latency" or config.mode != "pareto":
        return None
    from ..latency.lut import LatencyTable

    table = LatencyTable.load(config.lut)
    table.check_covers(config.space)  # fail now, not hours into the search
    return table


def proxy_accuracy_evaluator(config: StudyConfig, threads: int | None = None, device: str | None = None):
    """An Evaluator that trains each spec on the study's dataset and reports per-epoch top-1.

    `device` (default: the study's, resolved here) is where it trains. When the study keeps
    weights, the outcome's "checkpoint" is a temporary safetensors file for the objective to
    keep or drop. A cached result carries no weights: it is served as it is, with a "retrain"
    callable that trains the spec again for its weights, which the objective calls only when
    the policy would keep them (so a search under `best` pays again only for a new best).
    Ctrl-C (see `shufflesearch.interrupt`) stops a trial at its next optimiser step.
    """
    import dataclasses

    import optuna

    from ..accuracy.cache import ResultCache, result_key
    from ..accuracy.datasets import load_dataset
    from ..accuracy.devices import resolve_device
    from ..accuracy.recipe import adapt_spec
    from ..accuracy.trainer import TRAINER_VERSION, TrainResult, train_proxy

    device = resolve_device(device or config.device)
    keep = config.keep_weights != "none"
    dataset = load_dataset(config.dataset, config.data_dir)
    fidelity = config.fidelity
    cache = ResultCache()
    table = latency_table(config)

    def outcome(result) -> dict:
        if result.status != "ok":
            # Deterministic for this spec and recipe: retrying would diverge again.
            raise optuna.TrialPruned(f"training {result.status}")
        checkpoint = {"checkpoint": _write_checkpoint(result)} if keep and result.weights is not None else {}
        return {
            "top1": result.top1,
            "test_loss": result.test_loss,
            "train_seconds": result.seconds,
            "images_seen": result.images_seen,
            "status": result.status,
            "cached": result.cached,
            "curve": result.curve,
            "dataset": result.dataset,
            "top5": result.top5,
            "device": result.device,
            **checkpoint,
        }

    def evaluate(spec, report) -> dict:
        def progress(p) -> None:
            interrupt.check()
            top1 = getattr(p, "top1", None)
            if p.epoch_end and top1 is not None:
                report(max(1, round(p.epoch)), top1)

        def train() -> dict:
            result = train_proxy(spec, dataset, fidelity, seed=config.seed, progress=progress, cache=cache,
                                 threads=threads, device=device, keep_weights=keep)  # fmt: skip
            return {**outcome(result), **latency}

        latency = {} if table is None else {"latency_ms": table.predict_ms(spec), "latency_kind": "lut-predicted"}
        if keep:  # train_proxy skips the cache when it must keep weights: look it up here, by its own key
            key = result_key(adapt_spec(spec, dataset, fidelity), dataset.fingerprint, fidelity, config.seed,
                             TRAINER_VERSION, device)  # fmt: skip
            hit = cache.get(key)
            if hit is not None:
                cached = dataclasses.replace(TrainResult.from_dict(hit), cached=True)
                return {**outcome(cached), **latency, "retrain": train}
        return train()

    return evaluate


def _write_checkpoint(result) -> Path:
    """The run's weights as a checkpoint in a fresh temporary folder (the objective keeps or drops it)."""
    from ..checkpoint import save_result

    return save_result(Path(tempfile.mkdtemp(prefix="shufflesearch-weights-")) / "model.safetensors", result)


def make_objective(config: StudyConfig, window, evaluate: Evaluator, release_claim: Callable[[], None]):
    """Optuna's objective for one budget window: sample a spec, record it, evaluate it, return the objective values.

    `release_claim` (the queue's claim lock) is called first: Optuna has popped our queued trial.
    """
    import optuna

    def objective(trial):
        release_claim()  # let the next worker claim
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            spec = suggest_spec(trial, config.space, window)
        except NoFeasibleWidth as exc:
            trial.set_user_attr("infeasible", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        cost = count_complexity(spec)
        trial.set_user_attr("spec", spec.to_dict())
        trial.set_user_attr("label", spec.label)
        trial.set_user_attr("mflops", cost.mflops)
        trial.set_user_attr("params", cost.params)

        def report(step: int, top1: float) -> None:
            if config.mode == "per-budget":
                trial.report(top1, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {step} with top-1 {top1:.4f}")

        checkpoint = None
        try:
            outcome = evaluate(spec, report)
            retrain = outcome.pop("retrain", None)
            if retrain is not None:
                from .artifacts import would_keep

                if would_keep(config, trial, {**outcome, "mflops": cost.mflops}):
                    outcome = retrain()  # a cached result has no weights, and these would be kept
            checkpoint = outcome.pop("checkpoint", None)
            for key, value in outcome.items():
                trial.set_user_attr(key, value)
            if checkpoint is not None:
                _keep_weights(config, trial, checkpoint, {**outcome, "mflops": cost.mflops})
        except Exception as exc:
            if not isinstance(exc, optuna.TrialPruned):  # counted across retries: the attrs are inherited
                trial.set_user_attr("errors", trial.user_attrs.get("errors", 0) + 1)
                trial.set_user_attr("error", " ".join(str(exc).split())[:500] or type(exc).__name__)
            raise
        finally:
            if checkpoint is not None:
                shutil.rmtree(Path(checkpoint).parent, ignore_errors=True)
        if config.mode == "per-budget":
            return outcome["top1"]
        second = outcome["latency_ms"] if config.second_objective == "latency" else cost.mflops
        return outcome["top1"], second

    return objective


def _keep_weights(config: StudyConfig, trial, checkpoint: Path, values: dict) -> None:
    """Keep the trial's weights if the policy says so; a store that fails costs the weights, not the trial."""
    from .artifacts import ArtifactStoreError, WeightsNotKept, keep_trial_weights

    try:
        keep_trial_weights(config, trial, checkpoint, values)
    except ArtifactStoreError as exc:
        message = " ".join(str(exc).split())[:500]
        trial.set_user_attr("weights_error", message)
        warnings.warn(f"{message}; the trial's score is recorded without weights", WeightsNotKept, stacklevel=2)


__all__ = ["Evaluator", "latency_table", "make_objective", "proxy_accuracy_evaluator"]
