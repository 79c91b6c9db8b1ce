"""The `finish` command: a study's winner trained long, exported, evaluated and measured, in one folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..accuracy.recipe import AUGMENTS
from ..finish.recipe import FINISH_EPOCHS
from . import render
from .app import app
from .options import TARGETS, AsJson, Device, one_of, suggesting
from .search import StudyFile


@app.command()
def finish(
    study_file: StudyFile,
    budget: Annotated[float | None, typer.Option(help="The budget (MFLOPs) whose winner to finish.")] = None,
    budget_ms: Annotated[
        float | None, typer.Option(help="The latency budget (ms) whose winner to finish (a study in ms).")
    ] = None,
    trial: Annotated[
        int | None, typer.Option(help="Finish this trial of the budget instead of its winner.", min=0)
    ] = None,
    epochs: Annotated[float, typer.Option(help="Epochs over the whole training set.", min=0.01)] = FINISH_EPOCHS,
    resolution: Annotated[int | None, typer.Option(help="Input px (default: the study's recipe).")] = None,
    augment: Annotated[str | None, one_of(AUGMENTS, "Training augmentation (default: the study's).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="The folder to write (default: studies/finished/<budget>-trial<N>).")
    ] = None,
    device: Device = "auto",
    target: Annotated[
        str,
        suggesting(
            (*TARGETS, "none"), "Latency: local, ssh://user@host[:port], arm64-emulated or none.", metavar="<target>"
        ),
    ] = "local",
    storage: Annotated[str | None, typer.Option(help="Storage URL, e.g. postgresql://user@db/nas.")] = None,
    as_json: AsJson = False,
) -> None:
    """Train a study's winner to completion and write a folder to hand on: weights, ONNX, metrics, README.

    Interrupted (Ctrl-C, a kill), the same command resumes from the last finished epoch.

    Example: shufflesearch finish studies/demo.toml --budget 40 --epochs 30

    Example: shufflesearch finish studies/demo.toml --budget 13 --trial 2 --epochs 10 --target arm64-emulated

    Example: shufflesearch finish studies/paper-ladder-ms.toml --budget-ms 15.2 --target arm64-emulated
    """
    from .. import interrupt

    with interrupt.deferred():
        _finish(study_file, (budget, budget_ms), trial, epochs, resolution, augment, out, device, target, storage,
                as_json)  # fmt: skip


def _finish(study_file, budgets, trial, epochs, resolution, augment, out, device, target, storage, as_json) -> None:
    from ..finish import finish_winner
    from ..search.storage import check_storage_url
    from ..search.study_file import load_study
    from ..search.workers import storage_url_for

    config = load_study(study_file)
    url = check_storage_url(storage_url_for(config, storage))
    kwargs = dict(budget=budgets[0], budget_ms=budgets[1], trial=trial, out=out, epochs=epochs, resolution=resolution, augment=augment,
                  device=device, target=None if target == "none" else target)  # fmt: skip
    try:
        result = finish_winner(config, url, **kwargs) if as_json else _with_progress(config, url, kwargs, epochs)
    except KeyboardInterrupt:
        render.say("interrupted: the last finished epoch is kept; run the same command again to resume", err=True)
        raise SystemExit(130) from None
    if as_json:
        render.print_json(result.to_dict())
        return
    latency = result.latency
    where = "" if latency is None or latency["ms"] is None else (
        f", {latency['ms']:.2f} ms {latency['kind']} on {render.esc(latency['target'])}")  # fmt: skip
    render.console().print(
        f"{result.label} (trial {result.trial} of {result.study}): top-1 [bold]{render.pct(result.top1)}[/bold], "
        f"top-5 {render.pct(result.top5)} on {result.images:,} test images{where}; ONNX predictions equal "
        f"PyTorch's on {result.onnx['agree']:,}/{result.onnx['images']:,}")  # fmt: skip
    render.console().print(f"wrote {render.esc(result.out)}/ ({', '.join(result.files)})")


def _with_progress(config, url, kwargs, epochs):
    from ..finish import finish_winner

    with render.training_bar("finish", epochs) as progress:
        return finish_winner(config, url, progress=progress, **kwargs)
