"""Finish a study's winner: train long, save, export, evaluate, measure, describe; one folder out.

The folder (`default_out`: `<study folder>/finished/<window>-trial<N>/`):
- `model.safetensors`: the weights with the spec, recipe, dataset fingerprint and metrics;
- `model.onnx`: the same weights, dynamic batch, takes 0-255 float pixels (normalisation inside);
- `metrics.json`: top-1/top-5 on the test split, the ONNX check, latency, the recipe, the device;
- `README.md`: what is there and how it was made;
- `finish.json` and `training-state.pt`: what is being finished and the last epoch's training
  state, so the same command after Ctrl-C or a kill resumes (safe to delete when done).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import interrupt
from ..atomic import write_atomically
from ..errors import UsageError
from ..search.study_file import StudyConfig
from ..spec import ShuffleNetSpec
from .recipe import FINISH_EPOCHS, finish_fidelity

STATE_FILE = "training-state.pt"


class FinishError(UsageError):
    """The finishing run cannot go ahead as asked (its folder holds another run, the recipe diverged)."""


@dataclass(frozen=True)
class FinishResult:
    """What `finish_winner` made: the folder, the network and its measurements (fractions, ms)."""

    out: Path
    study: str  # the Optuna study (budget window), e.g. demo-40M
    budget: float | None  # MFLOPs: the window's budget (pareto mode: the cap asked for, if any); None: not in MFLOPs
    budget_ms: float | None  # the window's latency budget (pareto: the cap asked for), on the study's predictor
    trial: int
    label: str
    spec: dict[str, Any]
    proxy_top1: float | None  # what the search measured at its proxy recipe, on `proxy_split`
    proxy_split: str  # "validation" (held out of the search's training images), "test" (older studies) or "unknown"
    top1: float  # on the test split, as top5
    top5: float
    images: int  # test images scored
    onnx: dict[str, Any]  # images, agree, max_abs_diff
    latency: dict[str, Any] | None  # kind (measured | estimated | lut-predicted), ms, target, and the full result
    search_latency: dict[str, Any] | None  # what the search predicted: ms, kind (lut-estimated | lut-predicted)
    device: str
    train_seconds: float
    recipe: dict[str, Any]
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "out": str(self.out)}


def default_out(config: StudyConfig, study: str, trial: int) -> Path:
    """`<study folder>/finished/<window>-trial<N>`, e.g. studies/finished/demo-40M-trial3."""
    return config.path.parent / "finished" / f"{study}-trial{trial}"


def finish_winner(
    config: StudyConfig,
    url: str,
    *,
    budget: float | None = None,
    trial: int | None = None,
    budget_ms: float | None = None,
    out: str | Path | None = None,
    epochs: float = FINISH_EPOCHS,
    resolution: int | None = None,
    augment: str | None = None,
    device: str = "auto",
    target: str | None = "local",
    latency_runs: int | None = None,
    train_images: int | None = None,
    eval_images: int | None = None,
    progress: Callable[[Any], None] | None = None,
) -> FinishResult:
    """Train the winner of `budget` and/or `budget_ms` (or trial `trial`) with the finishing recipe; write its folder.

    `resolution`/`augment` None keep the study's; `train_images` None uses the whole training set
    and `eval_images` None the whole test split. `target` is where latency is measured or
    estimated (`latency.latency_on`: local, ssh://..., arm64-emulated); None skips it. The same
    call after an interruption resumes from the last finished epoch and ends with the same weights.
    """
    from ..accuracy.datasets import load_dataset
    from ..accuracy.devices import check_precision, resolve_device
    from ..search.results import find_trial

    device = resolve_device(device)  # a GPU that is not there: one line, before any work
    check_precision(config.fidelity.precision, device)  # nor a precision it lacks
    study, record = find_trial(config, url, budget=budget, trial=trial, budget_ms=budget_ms)
    dataset = load_dataset(config.dataset, config.data_dir)
    fidelity = finish_fidelity(config.window_fidelity(study), len(dataset.train_labels), epochs=epochs, resolution=resolution,
                               augment=augment, train_images=train_images, eval_images=eval_images)  # fmt: skip
    spec = ShuffleNetSpec.from_dict(record["spec"])
    out = Path(out) if out is not None else default_out(config, study, record["trial"])
    _claim_folder(out, {"study_file": str(config.path), "study": study, "trial": record["trial"],
                        "spec": spec.to_dict(), "recipe": fidelity.to_dict(), "seed": config.seed,
                        "dataset": config.dataset})  # fmt: skip

    result = _train(spec, dataset, fidelity, config.seed, device, out / STATE_FILE, progress)
    trained = ShuffleNetSpec.from_dict(result.spec)
    files = _write_network(out, trained, result)
    onnx = _check_onnx(out, dataset, fidelity.eval_images)
    latency = _latency(trained, target, latency_runs)
    finished = FinishResult(
        out=out, study=study, **_budgets(config, study, budget, budget_ms),
        trial=record["trial"], label=trained.label, spec=trained.to_dict(),
        proxy_top1=record["top1"], proxy_split=record["split"], top1=result.top1, top5=result.top5, images=onnx["images"],
        onnx=onnx, latency=latency, search_latency=_search_latency(record), device=result.device, train_seconds=result.seconds,
        recipe=fidelity.to_dict(), files=[*files, "metrics.json", "README.md"],
    )  # fmt: skip
    metrics = {**finished.to_dict(), "dataset": result.dataset, "seed": config.seed, "study_file": str(config.path),
               "training_top1": result.top1, "input_mean": list(result.input_mean),
               "input_std": list(result.input_std), "environment": result.environment}  # fmt: skip
    write_atomically(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    from .readme import folder_readme

    write_atomically(out / "README.md", folder_readme(finished, metrics))
    return finished


def _budgets(config: StudyConfig, study: str, budget: float | None, budget_ms: float | None) -> dict:
    """The window's budgets (per-budget mode), or the caps asked for (pareto)."""
    if config.mode == "pareto":
        return {"budget": budget, "budget_ms": budget_ms}
    ms = config.latency_windows()[study]
    return {"budget": config.budget_windows()[study][1] if config.budgets else None,
            "budget_ms": ms[1] if ms else None}  # fmt: skip


def _search_latency(record: dict) -> dict[str, Any] | None:
    """The latency the search recorded for the trial (a table's prediction or estimate), if any."""
    if record.get("latency_ms") is None:
        return None
    return {"ms": record["latency_ms"], "kind": record.get("latency_kind") or "unknown"}


def _claim_folder(out: Path, identity: dict) -> None:
    """Create `out`, or check it holds this same finishing run (then it resumes)."""
    marker = out / "finish.json"
    if marker.exists():
        try:
            stored = json.loads(marker.read_text())
        except (OSError, ValueError):
            stored = None
        if stored != json.loads(json.dumps(identity)):
            differs = next((k for k in identity if not isinstance(stored, dict) or stored.get(k) != identity[k]), "?")
            raise FinishError(f"{out} holds another finishing run (its {differs} differs); "
                              "name a new folder with --out, or delete that one")  # fmt: skip
        return
    if out.exists() and any(out.iterdir()):
        raise FinishError(f"{out} exists and is not a finishing run's folder; name a new one with --out")
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(marker, json.dumps(identity, indent=2) + "\n")


def _train(spec, dataset, fidelity, seed, device, state_file: Path, progress):
    from ..accuracy.trainer import train_proxy

    def report(p) -> None:
        interrupt.check()  # Ctrl-C: stop at the next step; the last epoch's state is on disk
        if progress is not None:
            progress(p)

    with interrupt.deferred():
        result = train_proxy(spec, dataset, fidelity, seed=seed, progress=report, device=device, keep_weights=True,
                             state_file=state_file)  # fmt: skip
    if result.status != "ok" or result.weights is None:
        raise FinishError(f"training {result.status} at the finishing recipe (lr {fidelity.lr:g}); "
                          "lower the study's [accuracy.fidelity] lr, or finish with fewer --epochs")  # fmt: skip
    return result


def _write_network(out: Path, spec: ShuffleNetSpec, result) -> list[str]:
    from ..checkpoint import save_result
    from ..export import export_onnx

    save_result(out / "model.safetensors", result, spec)
    export_onnx(spec, out / "model.onnx", weights=result.weights, batch=None, input_mean=list(result.input_mean),
                input_std=list(result.input_std))  # fmt: skip
    return ["model.safetensors", "model.onnx"]


def _check_onnx(out: Path, dataset, limit: int | None) -> dict[str, Any]:
    """The saved checkpoint's and the ONNX file's predictions compared on the test images the trainer's
    top-1 scored (the same class-balanced subset for a `limit`), so the reported top-1 is the shipped file's."""
    from ..accuracy.evaluate import eval_indices
    from ..accuracy.images import as_tensor, resize_images
    from ..checkpoint import load_checkpoint, trained_model
    from .onnx_check import check_onnx_predictions

    ckpt = load_checkpoint(out / "model.safetensors")
    x = as_tensor(dataset.test_images)
    keep = eval_indices(dataset.test_labels, limit)
    pixels = resize_images(x if keep is None else x[keep], ckpt.spec.resolution)
    return check_onnx_predictions(out / "model.onnx", trained_model(ckpt), pixels, ckpt.preprocessing.mean,
                                  ckpt.preprocessing.std)  # fmt: skip


def _latency(spec: ShuffleNetSpec, target: str | None, runs: int | None) -> dict[str, Any] | None:
    if target is None:
        return None
    from ..latency.targets import latency_on

    measured = latency_on(spec, target, runs=runs)
    data = measured.to_dict()
    kind = data.get("kind") or "estimated"  # an emulated estimate is never a measurement
    ms = next(data[k] for k in ("median_ms", "estimated_ms", "predicted_ms") if k in data)
    where = data.get("target") or data.get("profile") or target
    return {"kind": kind, "ms": ms if math.isfinite(ms) else None, "target": where, "result": data}


__all__ = ["STATE_FILE", "FinishError", "FinishResult", "default_out", "finish_winner"]
