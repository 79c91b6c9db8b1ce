"""What a trial measures: proxy accuracy (always) and, for latency studies, a LUT prediction."""

from __future__ import annotations

from .study_file import StudyConfig


def fidelity_of(config: StudyConfig):
    """The study's proxy-training fidelity: the default recipe with the file's overrides."""
    from ..accuracy.trainer import DEFAULT_FIDELITY, Fidelity

    return Fidelity.from_dict({**DEFAULT_FIDELITY.to_dict(), **config.fidelity})


def proxy_accuracy_evaluator(config: StudyConfig, threads: int | None = None):
    """An Evaluator that trains each spec on the study's dataset and reports per-epoch top-1."""
    import optuna

    from ..accuracy.cache import ResultCache
    from ..accuracy.datasets import load_dataset
    from ..accuracy.trainer import train_proxy

    dataset = load_dataset(config.dataset, config.data_dir)
    fidelity = fidelity_of(config)
    cache = ResultCache()

    def evaluate(spec, report) -> dict:
        def progress(p) -> None:
            top1 = getattr(p, "top1", None)
            if p.epoch_end and top1 is not None:
                report(max(1, round(p.epoch)), top1)

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
        }

    return evaluate
