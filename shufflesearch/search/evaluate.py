"""What a trial measures: proxy accuracy (always) and, for latency studies, a LUT prediction."""

from __future__ import annotations

from .. import interrupt
from .study_file import StudyConfig


def fidelity_of(config: StudyConfig):
    """The study's proxy-training fidelity: the default recipe with the file's overrides."""
    from ..accuracy.trainer import DEFAULT_FIDELITY, Fidelity

    return Fidelity.from_dict({**DEFAULT_FIDELITY.to_dict(), **config.fidelity})


def latency_table(config: StudyConfig):
    """The study's device LUT when latency is an objective (checked to cover the space), else None."""
    if config.second_objective != "latency" or config.mode != "pareto":
        return None
    from ..latency.lut import LatencyTable

    table = LatencyTable.load(config.lut)
    table.check_covers(config.space)  # fail now, not hours into the search
    return table


def proxy_accuracy_evaluator(config: StudyConfig, threads: int | None = None):
    """An Evaluator that trains each spec on the study's dataset and reports per-epoch top-1.

    Ctrl-C (see `shufflesearch.interrupt`) stops a trial at its next optimiser step.
    """
    import optuna

    from ..accuracy.cache import ResultCache
    from ..accuracy.datasets import load_dataset
    from ..accuracy.trainer import train_proxy

    dataset = load_dataset(config.dataset, config.data_dir)
    fidelity = fidelity_of(config)
    cache = ResultCache()
    table = latency_table(config)

    def evaluate(spec, report) -> dict:
        def progress(p) -> None:
            interrupt.check()
            top1 = getattr(p, "top1", None)
            if p.epoch_end and top1 is not None:
                report(max(1, round(p.epoch)), top1)

        latency = {} if table is None else {"latency_ms": table.predict_ms(spec), "latency_kind": "lut-predicted"}
        result = train_proxy(spec, dataset, fidelity, seed=config.seed, progress=progress, cache=cache, threads=threads)
        if result.status != "ok":
            # Deterministic for this spec and recipe: retrying would diverge again.
            raise optuna.TrialPruned(f"training {result.status}")
        return {
            "top1": result.top1,
            "test_loss": result.test_loss,
            "train_seconds": result.seconds,
            "images_seen": result.images_seen,
            "status": result.status,
            "cached": result.cached,
            "curve": result.curve,
            "dataset": result.dataset,
            **latency,
        }

    return evaluate
